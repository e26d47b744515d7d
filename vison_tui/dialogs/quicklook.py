"""The quick-look viewer (the console's quickds9): one FITS image, a CCD frame or one quadrant,
downsampled to the terminal in a worker (vison_tui.quicklook reads only the area asked, in
bands of rows), drawn with half blocks. Scale, area, extension and colours change by key; n/p
step through the test's other files without leaving the viewer.
"""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Footer, Static

from ..messages import QuickLookRead
from ..quicklook import (AREAS, PALETTES, SCALES, DownsampledImage, ImageSource, QuickLookError, read_downsampled,
                         render_cells, zoom_to_fit)


class ImageView(Widget):
    """Draws the current image (pre-rendered lines of half-block segments)."""

    DEFAULT_CSS = "ImageView { width: 1fr; height: 1fr; }"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lines: list = []
        self.message = "reading…"

    def show(self, lines: list, message: str = "") -> None:
        self.lines = lines
        self.message = message
        self.refresh()

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if not self.lines:
            if y == self.size.height // 2:
                text = Text(self.message, style="italic", justify="center")
                return Strip(list(text.render(self.app.console)), text.cell_len).crop_extend(0, width, self.rich_style)
            return Strip.blank(width, self.rich_style)
        if y >= len(self.lines):
            return Strip.blank(width, self.rich_style)
        strip = Strip(self.lines[y])
        left = max(0, (width - strip.cell_length) // 2)  # centred, like a picture
        if left:
            strip = Strip.join([Strip.blank(left, self.rich_style), strip])
        return strip.crop_extend(0, width, self.rich_style)


class QuickLookScreen(ModalScreen[None]):
    HELP_GROUP = "Quick look"
    BINDINGS = [
        Binding("escape,q", "close", "Close"),
        Binding("s", "next_scale", "Scale", tooltip="zscale, min-max, percentiles 1-99 and 5-95"),
        Binding("a", "next_area", "Area", tooltip="whole frame, then quadrants E, F, G, H"),
        Binding("x", "next_extension", "Extension", tooltip="next image extension of the file (STACK, STD...)"),
        Binding("c", "next_palette", "Colours", tooltip="grey or heat colours"),
        Binding("n", "step(1)", "Next file", tooltip="the test's next product or frame"),
        Binding("p", "step(-1)", "Prev file", tooltip="the test's previous product or frame"),
    ]
    DEFAULT_CSS = """
    QuickLookScreen { background: $background 60%; }
    QuickLookScreen > Vertical { width: 100%; height: 100%; background: $surface; }
    QuickLookScreen #ql-title { height: 1; padding: 0 1; background: $boost; text-style: bold; }
    QuickLookScreen #ql-info { height: 1; padding: 0 1; color: $text-muted; }
    QuickLookScreen #ql-scale { height: 1; padding: 0 1; }
    """

    def __init__(self, sources: list[ImageSource], position: int = 0) -> None:
        super().__init__()
        self.sources = sources
        self.position = position
        self.scale = SCALES[0]
        self.area = "frame"
        self.extension: str | None = None
        self.palette = PALETTES[0]
        self.image: DownsampledImage | None = None
        self.generation = 0

    @property
    def source(self) -> ImageSource:
        return self.sources[self.position]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("", id="ql-title", markup=False)
            yield Static("", id="ql-info", markup=False)
            yield ImageView(id="ql-image")
            yield Static("", id="ql-scale")
            yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.load()

    def on_resize(self) -> None:
        if self.is_mounted:
            self.load()

    # -- reading (worker) -----------------------------------------------------------------------
    def load(self) -> None:
        self.generation += 1
        view = self.query_one(ImageView)
        self.query_one("#ql-title", Static).update(f"{self.position + 1}/{len(self.sources)}  {self.source.path.name}")
        view.show([], "reading…")
        width, height = max(view.size.width, 10), max(view.size.height, 4) * 2
        self.read(self.source, self.extension, self.area, width, height, self.generation)

    @work(thread=True, exclusive=True, group="quicklook")
    def read(self, source: ImageSource, extension: str | None, area: str, width: int, height: int,
             generation: int) -> None:
        try:
            image = read_downsampled(source.path, extension, area, width, height)
        except QuickLookError as exc:
            self.post_message(QuickLookRead(generation, None, str(exc)))
            return
        except Exception as exc:  # a reader bug must not take the app down
            self.post_message(QuickLookRead(generation, None, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(QuickLookRead(generation, image))

    def on_quick_look_read(self, message: QuickLookRead) -> None:
        if message.generation != self.generation:
            return
        if message.image is None:
            self.image = None
            self.query_one(ImageView).show([], f"✗ {message.problem}")
            self.query_one("#ql-info", Static).update("")
            self.query_one("#ql-scale", Static).update("")
            return
        self.image = message.image
        self.extension = self.image.extension
        self.area = self.image.area
        self.draw()

    def draw(self) -> None:
        image = self.image
        if image is None:
            return
        view = self.query_one(ImageView)
        low, high = image.limits(self.scale)
        zoom = zoom_to_fit(image, view.size.width, view.size.height * 2)
        view.show(render_cells(image.data, low, high, self.palette, zoom))
        extension = f"[{image.extension}]" + (f" of {', '.join(image.extensions)}" if len(image.extensions) > 1 else "")
        area = f"area {image.area} of {'/'.join(image.areas)}"
        zoomed = f", x{zoom}" if zoom > 1 else ""
        self.query_one("#ql-info", Static).update(f"{extension} · {area} · {image.describe()}{zoomed} · row 0 at the bottom")
        finite = image.data[np.isfinite(image.data)]
        stats = (f"min {finite.min():.6g} median {float(np.median(finite)):.6g} max {finite.max():.6g}"
                 if finite.size else "no finite pixel")
        scale = Text.assemble(("scale ", "dim"), (self.scale, "bold"), (f" [{low:.6g}, {high:.6g}]  ", ""),
                              (f"colours {self.palette}  ", "dim"), (stats, "dim"))
        self.query_one("#ql-scale", Static).update(scale)

    # -- keys -----------------------------------------------------------------------------------
    def action_next_scale(self) -> None:
        self.scale = SCALES[(SCALES.index(self.scale) + 1) % len(SCALES)]
        self.draw()

    def action_next_palette(self) -> None:
        self.palette = PALETTES[(PALETTES.index(self.palette) + 1) % len(PALETTES)]
        self.draw()

    def action_next_area(self) -> None:
        areas = self.image.areas if self.image else list(AREAS)
        self.area = areas[(areas.index(self.area) + 1) % len(areas)] if self.area in areas else areas[0]
        self.load()

    def action_next_extension(self) -> None:
        if self.image is None or len(self.image.extensions) < 2:
            self.notify("this file has one image", title="Quick look")
            return
        extensions = self.image.extensions
        self.extension = extensions[(extensions.index(self.image.extension) + 1) % len(extensions)]
        self.load()

    def action_step(self, step: int) -> None:
        self.position = (self.position + step) % len(self.sources)
        self.extension = None
        self.load()

    def action_close(self) -> None:
        self.dismiss(None)


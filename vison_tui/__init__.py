"""vison's terminal app: screens and widgets that drive the engine (`engine/`), nothing more."""

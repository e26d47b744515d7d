"""The app's screens, one a module; `vison_tui.navigation` lists them."""

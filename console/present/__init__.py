"""How figures and text read to a person, shared by the TUI and the headless commands: no Textual, no Rich."""

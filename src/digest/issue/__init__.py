"""The weekly issue: which posts it holds, how they are laid out and rendered, and its record."""

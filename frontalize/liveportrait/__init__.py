"""liveportrait package."""

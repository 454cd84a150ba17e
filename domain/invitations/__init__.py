"""Guests of a video consultation, invited by SMS link (see model, manage, guest)."""

"""Placeholder subpackage: methods arrive with their own issues."""

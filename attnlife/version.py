"""The attnlife version (a module of its own, so the store can record it without importing the
package root)."""

__version__ = "0.1.0"

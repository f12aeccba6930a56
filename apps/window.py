"""Window mode for the demos: annotated frames in a desktop window, drawn on the main thread.

OpenCV's own window (``cv2.imshow``) where this OpenCV was built with a GUI; otherwise a Tk
window (``tkinter`` ships with Python), so an install with ``opencv-python-headless`` still
gets a window. Small frames (the 96 px synthetic scenes) are enlarged before the text is
drawn. The user closes the window, or presses ``q`` or Esc, to stop the demo.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from edge_sdk.errors import EdgeSDKError

__all__ = ["Window", "window_kind", "open_window", "hud", "MIN_SIDE"]

MIN_SIDE = 480  # smaller frames are enlarged by a whole factor for the window and the snapshot


def _opencv_has_gui() -> bool:
    info = cv2.getBuildInformation()
    return "GUI:" in info and "NONE" not in info.split("GUI:")[1].splitlines()[0].upper()


def window_kind() -> tuple[str | None, str]:
    """``("opencv" | "tk", "")`` when a window can be tried here, else ``(None, why not)``."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return None, "no display (DISPLAY is not set)"
    if _opencv_has_gui():
        return "opencv", ""
    try:
        import tkinter  # noqa: F401
    except ImportError:
        return None, "this OpenCV has no GUI (opencv-python-headless) and Python has no tkinter (apt install python3-tk)"
    return "tk", ""


def open_window(title: str) -> tuple["Window | None", str]:
    """``(window, "")`` where this machine can show one, else ``(None, why not)``."""
    kind, why = window_kind()
    if kind is None:
        return None, why
    try:
        return Window(title, kind), ""
    except EdgeSDKError as e:
        return None, str(e)


def hud(pipe) -> str:
    """The status line drawn on every frame: backend/precision and frames per second (each
    result's latency is drawn at the top by ``annotate``)."""
    return f"{pipe.backend}  {pipe.stats.fps(2.0):.0f} fps"  # of the last 2 s (drawn with each result)


class Window:
    """``show(rgb)`` draws a frame and returns False once the user has closed the window."""

    def __init__(self, title: str, kind: str | None = None):
        self.title, self.kind = title, kind or window_kind()[0]
        self.open, self.shown = True, 0
        if self.kind == "tk":
            import tkinter as tk

            try:
                self._root = tk.Tk()
            except tk.TclError as e:
                raise EdgeSDKError(f"cannot open a window on DISPLAY={os.environ.get('DISPLAY')}: {e}",
                                   "check the display (xdpyinfo), or pass --headless") from None
            self._root.title(title)
            self._root.protocol("WM_DELETE_WINDOW", self._closed)
            self._root.bind("<Key>", lambda e: self._closed() if e.keysym in ("q", "Escape") else None)
            self._label = tk.Label(self._root, borderwidth=0)
            self._label.pack()
            self._tk = tk
        elif self.kind == "opencv":
            try:
                cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE)
            except cv2.error as e:
                raise EdgeSDKError(f"cannot open a window on DISPLAY={os.environ.get('DISPLAY')}: {e}", "pass --headless") from None
        else:
            raise EdgeSDKError(f"no window toolkit: {window_kind()[1]}", "pass --headless")

    def _closed(self) -> None:
        self.open = False

    def show(self, rgb: np.ndarray) -> bool:
        if not self.open:
            return False
        rgb = np.ascontiguousarray(rgb)
        if self.kind == "tk":
            h, w = rgb.shape[:2]
            photo = self._tk.PhotoImage(data=b"P6 %d %d 255\n" % (w, h) + rgb.tobytes(), format="PPM")
            self._label.configure(image=photo)
            self._label.image = photo  # Tk keeps no reference of its own
            try:
                self._root.update()
            except self._tk.TclError:  # destroyed underneath us
                self.open = False
        else:
            cv2.imshow(self.title, rgb[:, :, ::-1])
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27) or cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
                self.open = False
        self.shown += self.open
        return self.open

    def drawer(self, pipe):
        """``on_result`` for :meth:`Pipeline.run`: each result annotated, with the HUD, in this window."""
        from edge_sdk.runtime.sinks import annotate

        return lambda result: self.show(annotate(result, hud(pipe), min_side=MIN_SIDE))

    def close(self) -> None:
        self.open = False
        if self.kind == "tk":
            try:
                self._root.destroy()
            except self._tk.TclError:
                pass
        elif self.kind == "opencv":
            cv2.destroyWindow(self.title)

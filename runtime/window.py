"""A desktop window as a sink (``window://``): annotated frames with the backend and FPS.

OpenCV's own window (``cv2.imshow``) where this OpenCV was built with a GUI; otherwise a Tk
window (``tkinter`` ships with Python), so an install with ``opencv-python-headless`` still
gets a window. Small frames (the 96 px synthetic scenes) are enlarged before the text is
drawn. Closing the window, or pressing ``q`` or Esc, ends the run.

GUI toolkits draw only on the thread that made the window (Tk must be driven from it, and
so must OpenCV's highgui on most builds), while sinks are fed on the inference thread. So
:class:`WindowSink` declares ``on_caller_thread``: the pipeline leaves it out there, and the
thread that consumes the results (:meth:`~.pipeline.Pipeline.run`, or iterating the
pipeline) draws each result into it and pumps its events while it waits; open the sink on
that thread (a call from another one is refused by name).
"""

from __future__ import annotations

import contextlib
import os
import threading

import cv2
import numpy as np

from edge_sdk.errors import ConfigError, EdgeSDKError
from edge_sdk.runtime.annotate import annotate

__all__ = ["WindowSink", "Window", "window_kind", "hud", "MIN_SIDE"]

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


def hud(pipe) -> str:
    """The status line drawn on every frame: backend/precision and frames per second (each
    result's latency is drawn at the top by ``annotate``)."""
    return f"{pipe.backend}  {pipe.stats.fps(2.0):.0f} fps"  # of the last 2 s (drawn with each result)


class Window:
    """``draw(rgb)`` puts a frame in the window, ``pump()`` handles its events and returns False
    once the user has closed it (``show`` does both). Used on the thread that made it."""

    def __init__(self, title: str, kind: str | None = None):
        self.title, self.kind = title, kind or window_kind()[0]
        self.open, self.shown = True, 0
        self._thread = threading.current_thread()
        if self.kind == "tk":
            import tkinter as tk

            try:
                self._root = tk.Tk()
            except tk.TclError as e:
                raise EdgeSDKError(
                    f"cannot open a window on DISPLAY={os.environ.get('DISPLAY')}: {e}", "check the display (xdpyinfo), or pass --headless"
                ) from None
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

    def _here(self) -> None:
        if threading.current_thread() is not self._thread:
            raise ConfigError(
                f"window {self.title!r} used from thread {threading.current_thread().name}, but it was opened on "
                f"{self._thread.name} (GUI toolkits draw only on the thread that made the window)",
                "open the window:// sink on the thread that calls Pipeline.run() or iterates the pipeline",
            )

    def draw(self, rgb: np.ndarray) -> None:
        self._here()
        if not self.open:
            return
        rgb = np.ascontiguousarray(rgb)
        if self.kind == "tk":
            h, w = rgb.shape[:2]
            photo = self._tk.PhotoImage(data=b"P6 %d %d 255\n" % (w, h) + rgb.tobytes(), format="PPM")
            self._label.configure(image=photo)
            self._label.image = photo  # Tk keeps no reference of its own
        else:
            cv2.imshow(self.title, rgb[:, :, ::-1])
        self.shown += 1

    def pump(self) -> bool:
        """Handle the window's events (painting, keys, the close button); False once closed."""
        self._here()
        if not self.open:
            return False
        if self.kind == "tk":
            try:
                self._root.update()
            except self._tk.TclError:  # destroyed underneath us
                self.open = False
        elif (cv2.waitKey(1) & 0xFF) in (ord("q"), 27) or (self.shown and cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1):
            self.open = False
        return self.open

    def show(self, rgb: np.ndarray) -> bool:
        self.draw(rgb)
        return self.pump()

    def close(self) -> None:
        self.open = False
        if self.kind == "tk":
            with contextlib.suppress(self._tk.TclError):
                self._root.destroy()
        elif self.kind == "opencv":
            cv2.destroyWindow(self.title)


class WindowSink:
    """``window://``: each result annotated, with the HUD (backend, FPS), in a :class:`Window`
    opened here (an EdgeSDKError saying why where there is no display or toolkit). A sink as
    :class:`~.sinks.Sink` describes, fed on the consumer's thread."""

    on_caller_thread = True

    def __init__(self, title: str = "edge-sdk", min_side: int = MIN_SIDE, kind: str | None = None):
        if kind is None:
            kind, why = window_kind()
            if kind is None:
                raise EdgeSDKError(why, "pass --headless, or use mjpeg://127.0.0.1:8090 and a browser for a live preview")
        self.window = Window(title, kind)
        self.min_side = min_side
        self.pipeline = None  # set by attach: its backend and frame rate are drawn on every frame

    @property
    def kind(self) -> str:
        return self.window.kind

    @property
    def shown(self) -> int:
        return self.window.shown

    def attach(self, pipeline) -> None:
        self.pipeline = pipeline

    def result(self, r) -> None:
        self.window.draw(annotate(r, hud(self.pipeline) if self.pipeline is not None else "", min_side=self.min_side))

    def pump(self) -> bool:
        return self.window.pump()

    def close(self) -> None:
        self.window.close()

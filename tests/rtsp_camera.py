"""A real RTSP camera for the tests: GStreamer's RTSP server (gst-rtsp-server) streams the
H.264 track of an MP4 at its own frame rate as rtsp://127.0.0.1:PORT/cam.

Run with the system Python that has PyGObject (apt: python3-gi gir1.2-gst-rtsp-server-1.0
gstreamer1.0-plugins-good): ``/usr/bin/python3 tests/rtsp_camera.py CLIP.mp4 PORT``.
Prints "ready" once it listens; exits 2 when the GStreamer bindings or elements are missing."""

import sys

try:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer
except (ImportError, ValueError) as e:
    print(f"no GStreamer RTSP server bindings: {e}", flush=True)
    sys.exit(2)

Gst.init(None)
path, port = sys.argv[1], sys.argv[2]
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
launch = f'filesrc location="{path}" ! qtdemux name=d d.video_0 ! queue ! rtph264pay name=pay0 pt=96 config-interval=1'
try:  # the server starts a client's pipeline only when it connects: check the elements exist now
    Gst.parse_launch(launch)
except GLib.Error as e:
    print(f"no GStreamer elements for the RTSP camera ({e.message}): apt-get install gstreamer1.0-plugins-good", flush=True)
    sys.exit(2)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(f"( {launch} )")
factory.set_shared(True)  # one camera, however many clients
server.get_mount_points().add_factory("/cam", factory)
if server.attach(None) == 0:
    sys.exit(f"could not listen on 127.0.0.1:{port}")
print("ready", flush=True)
GLib.MainLoop().run()

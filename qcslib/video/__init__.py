"""Faces in videos and camera streams, one module per concern: ``decode`` (frame sources), ``encode``
(``VideoWriter``), ``track`` (stable face ids), ``smooth`` (the EMA over time, and the label's hysteresis),
``nuisance`` (what real video does to frames, added to a rendered clip), ``draw`` (boxes and labels on a frame),
``report`` (the CSV columns, the timeline plot, the time per stage) and ``predict`` (``predict_video``, which
runs them in turn). The lower modules import nothing from ``predict``, ``analysis`` or ``train``."""
from .decode import VIDEO_SUFFIXES, Camera, Frame, FrameSource, VideoError, VideoFile
from .draw import draw_records
from .encode import VideoWriter
from .predict import DETECT_SIDE, EVERY, VIDEO_OUTPUTS, check_options, predict_video
from .report import STAGES, StageClock, csv_columns, csv_row, plot_timeline
from .smooth import Hysteresis, Smoother, check_margin, check_tau
from .track import DetectionSchedule, Track, Tracker, iou

__all__ = ["VIDEO_SUFFIXES", "Camera", "Frame", "FrameSource", "VideoError", "VideoFile", "draw_records",
           "VideoWriter", "DETECT_SIDE", "EVERY", "VIDEO_OUTPUTS", "check_options", "predict_video", "STAGES",
           "StageClock", "csv_columns", "csv_row", "plot_timeline", "Hysteresis", "Smoother", "check_margin",
           "check_tau", "DetectionSchedule", "Track", "Tracker", "iou"]

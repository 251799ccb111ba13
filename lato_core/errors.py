"""Errors the pack raises on bad input; each message says what to do about it."""


class FaceEditError(ValueError):
    """Base class: bad input or missing files. Nodes let it through to the ComfyUI UI unchanged."""


class NoFaceError(FaceEditError):
    pass


class FaceSelectionError(FaceEditError):
    pass


class LandmarkFormatError(FaceEditError):
    pass


class ImageFormatError(FaceEditError):
    pass


class MissingBackendError(FaceEditError):
    pass


class ModelFileError(FaceEditError):
    """A model file that is missing, unreadable or of the wrong layout; the message names the file, the folder
    it belongs in and what is wrong."""

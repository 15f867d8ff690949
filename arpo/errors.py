"""User-facing errors: the CLI prints these as one line, without a traceback."""


class ArpoError(Exception):
    """A problem the user can fix (bad recipe, missing file, corrupt checkpoint)."""


class ConfigError(ArpoError):
    pass


class ModelLoadError(ArpoError):
    pass

"""The one exception tree of radflow.

    RadflowError
    ├── SettingsError          a setting is unknown or has a bad value (names the variable)
    ├── IngestError            HL7 transport, parsing and producing
    │   ├── FramingError       bytes that are not an MLLP frame, or a frame over the size bound
    │   ├── HL7ParseError      bytes that are not an HL7 v2 message we can read
    │   └── UnsupportedMessage a readable message we reject (type or version)
    ├── BrokerError            the Kafka-wire broker cannot be started or reached
    ├── StreamsError           a topic record is unreadable, or the stream library is not the verified one
    ├── ModelError             a model cannot be loaded, bootstrapped or run
    ├── TrainingError          a refit cannot run or its data is unusable
    └── StorageError           the database cannot be reached or written

Each layer raises its own subclass; callers catch the layer's base.
"""

from __future__ import annotations


class RadflowError(Exception):
    """Base of every error radflow raises on purpose."""


class SettingsError(RadflowError):
    """A setting is unknown or has a bad value; the message names the variable."""


class IngestError(RadflowError):
    """Base of errors in the HL7 ingest layer."""


class FramingError(IngestError):
    """Bytes on an MLLP connection that cannot be framed."""


class HL7ParseError(IngestError):
    """An HL7 v2 message that cannot be read.

    ``code`` is the HL7 table 0357 error code put into ERR-3 of the NAK.
    """

    def __init__(self, message: str, code: str = "100") -> None:
        super().__init__(message)
        self.code = code


class UnsupportedMessage(IngestError):
    """A readable message that is rejected (AR): unsupported type or version."""

    def __init__(self, message: str, code: str = "200") -> None:
        super().__init__(message)
        self.code = code


class BrokerError(RadflowError):
    """The Kafka-wire broker cannot be started or reached."""


class StreamsError(RadflowError):
    """A topic record cannot be read, or the installed Faust is outside the verified range."""


class ModelError(RadflowError):
    """A model cannot be loaded, bootstrapped or run."""


class TrainingError(RadflowError):
    """A refit cannot run, or its data is unusable."""


class StorageError(RadflowError):
    """The database cannot be reached or written."""

"""The error codes the runner sends back in `error` events (PROTOCOL.md, "File operations" and
"Events"): one table for the supervisor and fileops.py. The backend maps each of them once
(packages/core/src/runtime/runner-errors.ts); a code added here must be added there."""

import enum


class ErrorCode(str, enum.Enum):
    BAD_REQUEST = "bad_request"  # malformed, unknown op, or an operation that failed otherwise
    INVALID_PATH = "invalid_path"  # absolute, '..', NUL, a symlink component, names no file
    NOT_FOUND = "not_found"
    EXISTS = "exists"
    TOO_LARGE = "too_large"  # over maxBytes, an answer cap, or no space left in /work
    QUOTA_EXCEEDED = "quota_exceeded"  # a file_write over its quota.capBytes

    def __str__(self):
        return self.value


class FileError(Exception):
    """A request refused with one of the codes above."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message

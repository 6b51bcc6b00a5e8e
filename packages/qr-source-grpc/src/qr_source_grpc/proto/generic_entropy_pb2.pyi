from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ByteCountRequest(_message.Message):
    __slots__ = ("count", "sequence_id")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    count: int
    sequence_id: int
    def __init__(self, count: _Optional[int] = ..., sequence_id: _Optional[int] = ...) -> None: ...

class BytesResponse(_message.Message):
    __slots__ = ("data", "sequence_id")
    DATA_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    sequence_id: int
    def __init__(self, data: _Optional[bytes] = ..., sequence_id: _Optional[int] = ...) -> None: ...

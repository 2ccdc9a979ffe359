"""v3 message codec: exact bytes for what pgtwist builds, strict decoders for what it reads."""

from __future__ import annotations

import struct

import pytest

from pgtwist.wire import codes
from pgtwist.wire import messages as m
from pgtwist.wire.decode import (
    Reader,
    check_function_call,
    decode_auth,
    decode_backend_key_data,
    decode_bind,
    decode_execute,
    decode_fields,
    decode_parameter_status,
    decode_parse,
    decode_query,
    decode_sasl_initial_response,
    decode_sasl_mechanisms,
    decode_startup,
    decode_target,
    validate_frontend,
)
from pgtwist.wire.errors import PROTOCOL_VIOLATION, ProtocolViolation


def frame(code: bytes, body: bytes) -> bytes:
    """Independent framing helper: code byte, self-inclusive int32 length, body."""
    return code + struct.pack("!I", len(body) + 4) + body


# -- hand-built client message bodies (pgtwist has no encoders for these) ---------

def parse_body(name: bytes = b"", sql: bytes = b"SELECT $1", oids: tuple[int, ...] = (23,)) -> bytes:
    return name + b"\0" + sql + b"\0" + struct.pack("!h", len(oids)) + b"".join(
        struct.pack("!I", o) for o in oids
    )


def bind_body(
    portal: bytes = b"",
    statement: bytes = b"",
    formats: tuple[int, ...] = (0,),
    params: tuple[bytes | None, ...] = (b"42",),
    results: tuple[int, ...] = (1,),
) -> bytes:
    body = portal + b"\0" + statement + b"\0"
    body += struct.pack("!h", len(formats)) + b"".join(struct.pack("!h", f) for f in formats)
    body += struct.pack("!h", len(params))
    for p in params:
        body += struct.pack("!i", -1) if p is None else struct.pack("!i", len(p)) + p
    body += struct.pack("!h", len(results)) + b"".join(struct.pack("!h", f) for f in results)
    return body


def function_call_body(
    oid: int = 1598,
    formats: tuple[int, ...] = (),
    args: tuple[bytes | None, ...] = (),
    result_format: int = 0,
) -> bytes:
    body = struct.pack("!I", oid)
    body += struct.pack("!h", len(formats)) + b"".join(struct.pack("!h", f) for f in formats)
    body += struct.pack("!h", len(args))
    for a in args:
        body += struct.pack("!i", -1) if a is None else struct.pack("!i", len(a)) + a
    return body + struct.pack("!h", result_format)


def assert_violation(exc_info) -> None:
    assert exc_info.value.sqlstate == PROTOCOL_VIOLATION == "08P01"


# -- encoders: exact bytes ----------------------------------------------------------

def test_ready_for_query_bytes():
    assert m.ready_for_query() == b"Z\x00\x00\x00\x05I"
    assert m.ready_for_query(codes.TXN_BLOCK) == b"Z\x00\x00\x00\x05T"
    assert m.ready_for_query(codes.TXN_FAILED) == b"Z\x00\x00\x00\x05E"


def test_authentication_ok_bytes():
    assert m.AUTH_OK == b"R\x00\x00\x00\x08\x00\x00\x00\x00"
    assert m.authentication(codes.AUTH_OK) == m.AUTH_OK


def test_authentication_md5_bytes():
    assert m.authentication(codes.AUTH_MD5, b"\x01\x02\x03\x04") == (
        b"R\x00\x00\x00\x0c\x00\x00\x00\x05\x01\x02\x03\x04"
    )


def test_parameter_status_bytes():
    assert m.parameter_status("client_encoding", "UTF8") == (
        b"S\x00\x00\x00\x19client_encoding\x00UTF8\x00"
    )
    assert m.parameter_status(b"a", b"") == b"S\x00\x00\x00\x07a\x00\x00"


def test_backend_key_data_bytes():
    assert m.backend_key_data(1234, 0xDEADBEEF) == (
        b"K\x00\x00\x00\x0c\x00\x00\x04\xd2\xde\xad\xbe\xef"
    )


def test_error_response_fields_bytes():
    raw = m.error_response("08P01", "bad thing", detail="more", hint="try")
    body = (
        b"SERROR\x00VERROR\x00C08P01\x00Mbad thing\x00Dmore\x00Htry\x00\x00"
    )
    assert raw == b"E" + struct.pack("!I", len(body) + 4) + body


def test_error_response_fatal_without_optional_fields():
    raw = m.error_response("28P01", "no", severity="FATAL")
    assert raw == frame(b"E", b"SFATAL\x00VFATAL\x00C28P01\x00Mno\x00\x00")


def test_notice_response_bytes():
    assert m.notice_response("hello") == frame(
        b"N", b"SNOTICE\x00VNOTICE\x00C00000\x00Mhello\x00\x00"
    )


def test_cancel_request_bytes():
    assert m.cancel_request(1234, 5678) == (
        b"\x00\x00\x00\x10" b"\x04\xd2\x16\x2e" b"\x00\x00\x04\xd2" b"\x00\x00\x16\x2e"
    )
    assert struct.unpack("!I", m.cancel_request(0, 0)[4:8])[0] == 80877102


def test_ssl_request_bytes():
    assert m.ssl_request() == b"\x00\x00\x00\x08\x04\xd2\x16\x2f"


def test_startup_message_bytes():
    raw = m.startup_message({"user": "u", "database": "d"})
    body = b"\x00\x03\x00\x00" b"user\x00u\x00" b"database\x00d\x00" b"\x00"
    assert raw == struct.pack("!I", len(body) + 4) + body
    assert raw[:4] == b"\x00\x00\x00\x1b"


def test_startup_message_other_version():
    raw = m.startup_message({}, version=(3 << 16) | 2)
    assert raw == b"\x00\x00\x00\x09\x00\x03\x00\x02\x00"


def test_negotiate_protocol_version_bytes():
    assert m.negotiate_protocol_version(0, [b"_pq_.x"]) == (
        b"v\x00\x00\x00\x13" b"\x00\x00\x00\x00" b"\x00\x00\x00\x01" b"_pq_.x\x00"
    )
    assert m.negotiate_protocol_version(0, []) == b"v\x00\x00\x00\x0c" + b"\x00" * 8


def test_row_description_bytes():
    field = (
        b"\x00\x00\x00\x00"  # table OID
        b"\x00\x00"  # column attribute number
        b"\x00\x00\x00\x00"  # type OID
        b"\xff\xff"  # type size -1
        b"\xff\xff\xff\xff"  # type modifier -1
        b"\x00\x00"  # text format
    )
    assert m.row_description(["a"]) == frame(b"T", b"\x00\x01a\x00" + field)
    assert m.row_description(["ab", "c"]) == frame(b"T", b"\x00\x02ab\x00" + field + b"c\x00" + field)
    assert m.row_description([]) == b"T\x00\x00\x00\x06\x00\x00"


def test_data_row_with_null_bytes():
    assert m.data_row(["x", None, ""]) == (
        b"D\x00\x00\x00\x13" b"\x00\x03"
        b"\x00\x00\x00\x01x"
        b"\xff\xff\xff\xff"
        b"\x00\x00\x00\x00"
    )
    assert m.data_row(["é"]) == frame(b"D", b"\x00\x01\x00\x00\x00\x02\xc3\xa9")


def test_small_fixed_messages():
    assert m.command_complete("SELECT 1") == b"C\x00\x00\x00\x0dSELECT 1\x00"
    assert m.empty_query_response() == b"I\x00\x00\x00\x04"
    assert m.TERMINATE == b"X\x00\x00\x00\x04"
    assert m.SYNC == b"S\x00\x00\x00\x04"
    assert m.FLUSH == b"H\x00\x00\x00\x04"
    assert m.query("SELECT 1") == b"Q\x00\x00\x00\x0dSELECT 1\x00"
    assert m.password_message(b"pw\x00") == b"p\x00\x00\x00\x07pw\x00"


def test_sasl_initial_response_bytes():
    assert m.sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=abc") == frame(
        b"p", b"SCRAM-SHA-256\x00\x00\x00\x00\x0bn,,n=,r=abc"
    )


def test_frame_and_cstr():
    assert m.frame(ord("Q"), b"x\x00") == b"Q\x00\x00\x00\x06x\x00"
    assert m.frame(ord("S")) == b"S\x00\x00\x00\x04"
    assert m.cstr("é") == b"\xc3\xa9\x00"
    assert m.cstr(b"ab") == b"ab\x00"


# -- decoders: round trips -------------------------------------------------------------

def test_startup_round_trip():
    params = {"user": "alice", "database": "db", "application_name": "é app"}
    raw = m.startup_message(params)
    assert struct.unpack("!I", raw[:4])[0] == len(raw)
    assert decode_startup(raw[4:]) == (codes.PROTOCOL_3_0, params)


def test_parameter_status_round_trip():
    raw = m.parameter_status("TimeZone", "Europe/Paris")
    assert decode_parameter_status(raw[5:]) == ("TimeZone", "Europe/Paris")


def test_backend_key_data_round_trip():
    raw = m.backend_key_data(4242, 0xFFFFFFFF)
    assert decode_backend_key_data(raw[5:]) == (4242, 0xFFFFFFFF)


def test_auth_round_trip():
    assert decode_auth(m.AUTH_OK[5:]) == (codes.AUTH_OK, b"")
    assert decode_auth(m.authentication(codes.AUTH_MD5, b"salt")[5:]) == (codes.AUTH_MD5, b"salt")
    sasl = m.authentication(codes.AUTH_SASL, b"SCRAM-SHA-256\x00SCRAM-SHA-256-PLUS\x00\x00")
    subtype, payload = decode_auth(sasl[5:])
    assert subtype == codes.AUTH_SASL
    assert decode_sasl_mechanisms(payload) == ["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"]


def test_sasl_initial_response_round_trip():
    raw = m.sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=nonce")
    assert decode_sasl_initial_response(raw[5:]) == ("SCRAM-SHA-256", b"n,,n=,r=nonce")
    no_data = b"SCRAM-SHA-256\x00" + struct.pack("!i", -1)
    assert decode_sasl_initial_response(no_data) == ("SCRAM-SHA-256", b"")


def test_sasl_initial_response_rejects_malformed():
    with pytest.raises(ProtocolViolation) as exc:
        decode_sasl_initial_response(b"SCRAM-SHA-256\x00\x00\x00\x00\x09short")
    assert_violation(exc)
    with pytest.raises(ProtocolViolation):
        decode_sasl_initial_response(b"SCRAM-SHA-256\x00\x00\x00\x00\x01ab")  # trailing


def test_sasl_initial_response_rejects_negative_length_other_than_minus_one():
    # PostgreSQL reads length -1 as "no data"; any other negative length is a
    # malformed message (pq_getmsgbytes reports insufficient data).
    with pytest.raises(ProtocolViolation) as exc:
        decode_sasl_initial_response(b"SCRAM-SHA-256\x00" + struct.pack("!i", -2))
    assert_violation(exc)


def test_query_round_trip():
    assert decode_query(m.query("SELECT 'é'")[5:]) == "SELECT 'é'".encode()
    assert decode_query(b"\x00") == b""


def test_parse_round_trip():
    assert decode_parse(parse_body(b"s1", b"SELECT $1, $2", (23, 0xFFFFFFFF))) == (
        b"s1", b"SELECT $1, $2", (23, 0xFFFFFFFF)
    )
    assert decode_parse(parse_body(b"", b"SELECT 1", ())) == (b"", b"SELECT 1", ())


def test_bind_round_trip():
    assert decode_bind(bind_body(b"p1", b"s1")) == (b"p1", b"s1")
    body = bind_body(b"", b"s", formats=(0, 1), params=(b"a", None, b"", b"\x00\x01"), results=())
    assert decode_bind(body) == (b"", b"s")
    assert decode_bind(bind_body(formats=(), params=(), results=())) == (b"", b"")


def test_describe_close_round_trip():
    assert decode_target(b"Sstmt\x00", "Describe") == (ord("S"), b"stmt")
    assert decode_target(b"P\x00", "Describe") == (ord("P"), b"")
    assert decode_target(b"Pportal\x00", "Close") == (ord("P"), b"portal")


def test_execute_round_trip():
    assert decode_execute(b"portal\x00" + struct.pack("!i", 100)) == (b"portal", 100)
    assert decode_execute(b"\x00\x00\x00\x00\x00") == (b"", 0)


def test_function_call_round_trip():
    assert check_function_call(function_call_body()) == 1598
    body = function_call_body(0xFFFFFFF0, formats=(1,), args=(b"abc", None, b""), result_format=1)
    assert check_function_call(body) == 0xFFFFFFF0


def test_decode_fields_of_error_response():
    raw = m.error_response("42P01", 'relation "t" does not exist', detail="d", hint="h")
    fields = decode_fields(raw[5:])
    assert fields == {
        "S": "ERROR",
        "V": "ERROR",
        "C": "42P01",
        "M": 'relation "t" does not exist',
        "D": "d",
        "H": "h",
    }


def test_decode_fields_of_server_style_error():
    body = (
        b"SFATAL\x00VFATAL\x00C28P01\x00"
        b'Mpassword authentication failed for user "bob"\x00'
        b"Fauth.c\x00L335\x00Rauth_failed\x00\x00"
    )
    fields = decode_fields(body)
    assert fields["C"] == "28P01"
    assert fields["M"] == 'password authentication failed for user "bob"'
    assert fields["F"] == "auth.c" and fields["L"] == "335" and fields["R"] == "auth_failed"
    assert decode_fields(b"\x00") == {}
    assert decode_fields(b"") == {}


# -- decoders: malformed input ----------------------------------------------------

MALFORMED = {
    "query empty": (codes.QUERY, b""),
    "query missing terminator": (codes.QUERY, b"SELECT 1"),
    "query embedded NUL": (codes.QUERY, b"SELECT 1\x00; DROP TABLE t\x00"),
    "parse missing name terminator": (codes.PARSE, b"stmt"),
    "parse missing sql terminator": (codes.PARSE, b"\x00SELECT 1"),
    "parse missing count": (codes.PARSE, b"\x00SELECT 1\x00"),
    "parse negative count": (codes.PARSE, b"\x00SELECT 1\x00\xff\xff"),
    "parse truncated oids": (codes.PARSE, b"\x00SELECT $1\x00\x00\x02\x00\x00\x00\x17"),
    "parse trailing garbage": (codes.PARSE, parse_body() + b"x"),
    "bind empty": (codes.BIND, b""),
    "bind missing statement": (codes.BIND, b"portal\x00"),
    "bind negative format count": (codes.BIND, b"\x00\x00\xff\xff"),
    "bind truncated formats": (codes.BIND, b"\x00\x00\x00\x02\x00\x00"),
    "bind negative param count": (codes.BIND, b"\x00\x00\x00\x00\xff\xfe"),
    "bind truncated param value": (
        codes.BIND,
        b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x0aabc",
    ),
    "bind missing second param": (
        codes.BIND,
        b"\x00\x00\x00\x00\x00\x02\x00\x00\x00\x01a",
    ),
    "bind param length below -1": (
        codes.BIND,
        b"\x00\x00\x00\x00\x00\x01\xff\xff\xff\xfe\x00\x00",
    ),
    "bind missing result formats": (codes.BIND, bind_body()[:-4]),
    "bind negative result count": (codes.BIND, bind_body(results=())[:-2] + b"\xff\xff"),
    "bind trailing garbage": (codes.BIND, bind_body() + b"\x00"),
    "describe bad kind": (codes.DESCRIBE, b"Xname\x00"),
    "describe lowercase kind": (codes.DESCRIBE, b"sname\x00"),
    "describe empty": (codes.DESCRIBE, b""),
    "describe missing terminator": (codes.DESCRIBE, b"Sname"),
    "describe trailing garbage": (codes.DESCRIBE, b"Sname\x00x"),
    "close bad kind": (codes.CLOSE, b"Qname\x00"),
    "execute too short": (codes.EXECUTE, b"\x00\x00\x00"),
    "execute empty": (codes.EXECUTE, b""),
    "execute missing terminator": (codes.EXECUTE, b"portal"),
    "execute trailing garbage": (codes.EXECUTE, b"\x00\x00\x00\x00\x00\x00"),
    "function call empty": (codes.FUNCTION_CALL, b""),
    "function call short oid": (codes.FUNCTION_CALL, b"\x00\x00\x06"),
    "function call negative format count": (codes.FUNCTION_CALL, b"\x00\x00\x06\x3e\xff\xff"),
    "function call truncated formats": (codes.FUNCTION_CALL, b"\x00\x00\x06\x3e\x00\x02\x00\x00"),
    "function call negative arg count": (
        codes.FUNCTION_CALL,
        b"\x00\x00\x06\x3e\x00\x00\xff\xff\x00\x00",
    ),
    "function call truncated arg": (
        codes.FUNCTION_CALL,
        b"\x00\x00\x06\x3e\x00\x00\x00\x01\x00\x00\x00\x05ab",
    ),
    "function call arg length below -1": (
        codes.FUNCTION_CALL,
        b"\x00\x00\x06\x3e\x00\x00\x00\x01\xff\xff\xff\xf0\x00\x00",
    ),
    "function call missing result format": (codes.FUNCTION_CALL, function_call_body()[:-2]),
    "function call trailing garbage": (codes.FUNCTION_CALL, function_call_body() + b"\x00"),
    "sync with body": (codes.SYNC, b"\x00"),
    "flush with body": (codes.FLUSH, b"x"),
    "terminate with body": (codes.TERMINATE, b"x"),
    "copy done with body": (codes.COPY_DONE, b"x"),
    "copy fail missing terminator": (codes.COPY_FAIL, b"oops"),
    "copy fail trailing garbage": (codes.COPY_FAIL, b"oops\x00x"),
}


@pytest.mark.parametrize("code, body", list(MALFORMED.values()), ids=list(MALFORMED))
def test_validate_frontend_rejects_malformed(code, body):
    with pytest.raises(ProtocolViolation) as exc:
        validate_frontend(code, body)
    assert_violation(exc)


def test_decoders_reject_directly():
    with pytest.raises(ProtocolViolation) as exc:
        decode_query(b"a\x00b\x00")
    assert_violation(exc)
    with pytest.raises(ProtocolViolation) as exc:
        decode_parse(b"\x00SELECT 1")
    assert_violation(exc)
    with pytest.raises(ProtocolViolation) as exc:
        decode_bind(b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x04ab")
    assert_violation(exc)
    with pytest.raises(ProtocolViolation) as exc:
        decode_target(b"Zx\x00", "Describe")
    assert_violation(exc)
    assert "Describe" in exc.value.message
    with pytest.raises(ProtocolViolation) as exc:
        decode_execute(b"\x00\x00")
    assert_violation(exc)
    with pytest.raises(ProtocolViolation) as exc:
        check_function_call(b"\x00\x00\x00\x01\x00\x00\x00\x01")
    assert_violation(exc)


def test_violation_message_does_not_echo_payload():
    secret = b"SELECT 'hunter2'"
    with pytest.raises(ProtocolViolation) as exc:
        decode_query(secret + b"\x00junk\x00")
    assert "hunter2" not in str(exc.value)


VALID = {
    "query": (codes.QUERY, b"SELECT 1\x00"),
    "parse": (codes.PARSE, parse_body()),
    "bind": (codes.BIND, bind_body()),
    "describe": (codes.DESCRIBE, b"S\x00"),
    "close": (codes.CLOSE, b"Pp\x00"),
    "execute": (codes.EXECUTE, b"\x00\x00\x00\x00\x00"),
    "sync": (codes.SYNC, b""),
    "flush": (codes.FLUSH, b""),
    "terminate": (codes.TERMINATE, b""),
    "function call": (codes.FUNCTION_CALL, function_call_body(args=(b"1",))),
    "copy data": (codes.COPY_DATA, b"1\t2\n\x00\xff"),
    "copy data empty": (codes.COPY_DATA, b""),
    "copy done": (codes.COPY_DONE, b""),
    "copy fail": (codes.COPY_FAIL, b"cancelled by user\x00"),
}


@pytest.mark.parametrize("code, body", list(VALID.values()), ids=list(VALID))
def test_validate_frontend_accepts_valid(code, body):
    validate_frontend(code, body)


@pytest.mark.parametrize("code", [ord("p"), ord("z"), 0, ord("R"), ord("Z"), ord("T"), 255])
def test_validate_frontend_rejects_unknown_codes(code):
    with pytest.raises(ProtocolViolation) as exc:
        validate_frontend(code, b"")
    assert_violation(exc)
    assert str(code) in exc.value.message


def test_decode_startup_rejects_malformed():
    ok = m.startup_message({"user": "u"})[4:]
    for body in (
        b"\x00\x03",  # truncated version
        b"\x00\x03\x00\x00user\x00u\x00",  # missing final terminator
        b"\x00\x03\x00\x00user\x00",  # key without value
        ok + b"x",  # trailing garbage
        b"\x00\x03\x00\x00user\x00\xff\xfe\x00\x00",  # not UTF-8
    ):
        with pytest.raises(ProtocolViolation) as exc:
            decode_startup(body)
        assert_violation(exc)


def test_decode_backend_key_data_rejects_wrong_length():
    for body in (b"", b"\x00" * 7, b"\x00" * 9, b"\x00" * 36):
        with pytest.raises(ProtocolViolation) as exc:
            decode_backend_key_data(body)
        assert_violation(exc)


def test_decode_auth_and_parameter_status_reject_truncated():
    with pytest.raises(ProtocolViolation):
        decode_auth(b"\x00\x00")
    with pytest.raises(ProtocolViolation):
        decode_parameter_status(b"name\x00value")
    with pytest.raises(ProtocolViolation):
        decode_parameter_status(b"")


def test_reader_bounds():
    r = Reader(memoryview(b"ab\x00\x00\x01\xff\xff\xff\xfe"), "Test")
    assert r.cstring() == b"ab"
    assert r.int16() == 1
    assert r.int32() == -2
    r.end()
    with pytest.raises(ProtocolViolation) as exc:
        r.byte()
    assert exc.value.message == "invalid Test message format"
    r2 = Reader(b"\xff\xff\xff\xff", "Test")
    assert r2.uint32() == 0xFFFFFFFF
    with pytest.raises(ProtocolViolation):
        Reader(b"abc", "Test").take(-1)
    with pytest.raises(ProtocolViolation):
        Reader(b"abc", "Test").take(4)
    with pytest.raises(ProtocolViolation):
        Reader(b"abc", "Test").end()

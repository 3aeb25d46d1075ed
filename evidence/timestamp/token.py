"""RFC 3161 time-stamp tokens and replies, decoded into plain values: nothing is trusted yet.

A token is CMS SignedData (RFC 5652) over a TSTInfo (RFC 3161 section 2.4.2). Object
identifiers are written out in dotted form so a reader can look each one up in its RFC.

This module is long because RFC 3161 and CMS nest many structures; each decoder is short,
and together they decode every field a token carries in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from asn1crypto import cms, core, parser, tsp
from cryptography import x509

from evidence.errors import TimestampError

SHA256_OID = "2.16.840.1.101.3.4.2.1"
SHA1_OID = "1.3.14.3.2.26"  # only ever to identify a certificate in an ESSCertID
# What asn1crypto and cryptography raise on bytes they cannot decode; asn1crypto decodes
# lazily, so any field access on a parsed token may raise one of these.
_DECODE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError)
_ID_SIGNED_DATA = "1.2.840.113549.1.7.2"
ID_CT_TST_INFO = "1.2.840.113549.1.9.16.1.4"
_ATTR_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_ATTR_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_ATTR_SIGNING_CERTIFICATE = "1.2.840.113549.1.9.16.2.12"
_ATTR_SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"
_GRANTED = ("granted", "granted_with_mods")
# RFC 4514 section 3: the attribute types written by short name.
_SHORT_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.6": "C",
    "2.5.4.9": "STREET",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}


@dataclass(frozen=True)
class TimestampInfo:
    """What a time-stamp token says: when the TSA saw which digest, under which policy."""

    gen_time: datetime
    """When the TSA made the token (UTC), within ``accuracy``."""
    serial: int
    """The TSA's serial number for this token, unique per TSA."""
    policy: str
    """The TSA policy the token was made under (dotted OID)."""
    tsa_name: str | None
    """The TSA's name from the token (RFC 4514 for a directory name), if it gives one."""
    accuracy: timedelta | None
    """How far the true time may lie from ``gen_time`` either way, if the TSA says."""
    digest: bytes
    """The SHA-256 digest of the time-stamped data (the message imprint)."""
    nonce: int | None = None
    """The requester's nonce, echoed by the TSA."""
    ordering: bool = False
    """Whether tokens of this TSA are ordered by ``gen_time`` regardless of accuracy."""


@dataclass(frozen=True)
class _CertId:
    """One ESSCertID or ESSCertIDv2: a hash of the signing certificate, maybe its issuer/serial."""

    hash_oid: str
    cert_hash: bytes
    issuer_names: tuple[bytes, ...]
    serial: int | None


@dataclass(frozen=True)
class Signer:
    """The token's single SignerInfo, decoded into plain values."""

    issuer: bytes | None
    serial: int | None
    key_id: bytes | None
    digest_oid: str
    signature_oid: str
    signature: bytes
    signed_attributes: bytes
    content_type: str
    message_digest: bytes
    cert_ids: tuple[_CertId, ...]
    cert_ids_v1: tuple[_CertId, ...]


@dataclass(frozen=True)
class TimestampToken:
    """A decoded RFC 3161 time-stamp token; nothing in it is trusted until verified."""

    der: bytes
    """The token itself: a DER CMS ContentInfo holding SignedData."""
    info: TimestampInfo
    """What the token claims (unverified)."""
    certificates: tuple[x509.Certificate, ...]
    """The certificates the token carries (the TSA's, when the request asked for it)."""
    _tst_info: bytes = field(repr=False)
    _signer: Signer = field(repr=False)
    _tsa_name: tuple[str, bytes | str] | None = field(repr=False)

    @classmethod
    def from_der(cls, data: bytes) -> TimestampToken:
        """Decode a DER ``TimeStampResp`` (which must be granted) or a bare token."""
        if _is_response(data):
            response = TimestampResponse.from_der(data)
            if response.token is None:
                raise TimestampError(
                    f"the time-stamp authority refused the request: {response.describe()}"
                )
            # The status is not signed; a token is only trusted under a plain grant.
            if response.status != "granted":
                raise TimestampError(
                    f"time-stamp reply has status {response.status}; only granted is accepted"
                )
            return response.token
        return _decode_token(bytes(data))


@dataclass(frozen=True)
class TimestampResponse:
    """A decoded RFC 3161 ``TimeStampResp``: the TSA's status and, when granted, its token."""

    status: str
    """``granted``, ``granted_with_mods``, ``rejection``, ``waiting``, ..."""
    status_text: str
    """The TSA's free-text explanation, if any."""
    fail_info: tuple[str, ...]
    """The failure reasons (``bad_alg``, ``bad_request``, ``bad_data_format``, ...)."""
    token: TimestampToken | None
    """The token, present exactly when the status is granted."""

    @classmethod
    def from_der(cls, data: bytes) -> TimestampResponse:
        """Decode a DER ``TimeStampResp``; raise ``TimestampError`` if it is malformed."""
        status_der, *rest = _children(data, "time-stamp reply")
        if len(rest) > 1:
            raise TimestampError("time-stamp reply has more than a status and a token")
        try:
            info = tsp.PKIStatusInfo.load(status_der, strict=True)
            # Nothing signs the status, so at least insist on its one (DER) encoding.
            if info.dump(force=True) != status_der:
                raise TimestampError("time-stamp reply's status is not DER-encoded")
            status = str(info["status"].native)
            texts = info["status_string"].native or []
            status_text = "; ".join(str(text) for text in texts)
            failures = info["fail_info"].native or set()
            fail_info = tuple(sorted(str(reason) for reason in failures))
        except _DECODE_ERRORS as exc:
            raise TimestampError(f"time-stamp reply has a malformed status: {exc}") from exc
        granted = status in _GRANTED
        if granted != bool(rest):
            raise TimestampError(
                f"time-stamp reply has status {status} "
                + ("but carries no token" if granted else "yet carries a token")
            )
        token = _decode_token(rest[0]) if rest else None
        return cls(status=status, status_text=status_text, fail_info=fail_info, token=token)

    def describe(self) -> str:
        """Say the status in one line: ``rejection (bad_alg): <the TSA's text>``."""
        text = self.status
        if self.fail_info:
            text += f" ({', '.join(self.fail_info)})"
        if self.status_text:
            text += f": {self.status_text}"
        return text


def _is_response(data: bytes) -> bool:
    """Tell a ``TimeStampResp`` (starts with a status SEQUENCE) from a bare token (an OID)."""
    first = _children(data, "time-stamp token")[0]
    return first[:1] == b"\x30"


def _children(data: object, what: str) -> list[bytes]:
    """Split the DER SEQUENCE ``data`` into its elements' encodings, refusing trailing bytes."""
    if not isinstance(data, bytes | bytearray):
        raise TimestampError(f"{what} must be bytes, not {type(data).__name__}")
    try:
        class_, method, tag, _header, contents, _trailer = parser.parse(bytes(data), strict=True)
        if (class_, method, tag) != (0, 1, 16):
            raise TimestampError(f"{what} is not an ASN.1 SEQUENCE")
        children = []
        while contents:
            _class, _method, _tag, header, body, trailer = parser.parse(contents)
            child = header + body + trailer
            children.append(child)
            contents = contents[len(child) :]
    except _DECODE_ERRORS as exc:
        raise TimestampError(f"{what} is not valid DER: {exc}") from exc
    if not children:
        raise TimestampError(f"{what} is an empty SEQUENCE")
    return children


def _decode_token(der: bytes) -> TimestampToken:
    """Decode a token's ContentInfo into plain values; any decoding failure is a TimestampError."""
    try:
        content_info = cms.ContentInfo.load(der, strict=True)
        if content_info["content_type"].dotted != _ID_SIGNED_DATA:
            raise TimestampError("time-stamp token is not CMS SignedData")
        signed_data = content_info["content"]
        # RFC 5652 section 5.1: version 3 because the content is not id-data.
        if signed_data["version"].native != "v3":
            raise TimestampError(
                f"time-stamp token's SignedData has version {signed_data['version'].native}, not v3"
            )
        encapsulated = signed_data["encap_content_info"]
        if encapsulated["content_type"].dotted != ID_CT_TST_INFO:
            raise TimestampError("time-stamp token does not encapsulate a TSTInfo")
        if isinstance(encapsulated["content"], core.Void):
            raise TimestampError("time-stamp token has no TSTInfo content")
        tst_info = bytes(encapsulated["content"])
        info, tsa_name = _decode_tst_info(tst_info)
        signer_infos = list(signed_data["signer_infos"])
        if len(signer_infos) != 1:
            raise TimestampError(
                f"time-stamp token has {len(signer_infos)} signers; RFC 3161 requires one"
            )
        signer = _decode_signer(signer_infos[0])
        digest_algorithms = [_algorithm(alg, "digest") for alg in signed_data["digest_algorithms"]]
        if signer.digest_oid not in digest_algorithms:
            raise TimestampError("time-stamp token's signer uses a digest the SignedData omits")
        carried = _decode_certificates(signed_data["certificates"])
    except TimestampError:
        raise
    except _DECODE_ERRORS as exc:
        raise TimestampError(f"time-stamp token is malformed: {exc}") from exc
    return TimestampToken(
        der=der,
        info=info,
        certificates=carried,
        _tst_info=tst_info,
        _signer=signer,
        _tsa_name=tsa_name,
    )


def _decode_tst_info(der: bytes) -> tuple[TimestampInfo, tuple[str, bytes | str] | None]:
    """Decode a TSTInfo (RFC 3161 section 2.4.2); return it and its raw TSA name."""
    tst = tsp.TSTInfo.load(der, strict=True)
    if tst["version"].native != "v1":
        raise TimestampError(f"TSTInfo has version {tst['version'].native}, not v1")
    imprint = tst["message_imprint"]
    if _algorithm(imprint["hash_algorithm"], "message imprint") != SHA256_OID:
        raise TimestampError("time-stamp token's message imprint is not a SHA-256 digest")
    gen_time = tst["gen_time"].native
    if not isinstance(gen_time, datetime) or gen_time.utcoffset() != timedelta(0):
        raise TimestampError("time-stamp token's genTime is not a UTC time")
    for extension in tst["extensions"].native or []:
        if extension["critical"]:
            raise TimestampError(
                f"time-stamp token has an unsupported critical extension {extension['extn_id']}"
            )
    tsa_name = _decode_general_name(tst["tsa"]) if tst["tsa"].native is not None else None
    info = TimestampInfo(
        gen_time=gen_time.astimezone(UTC),
        serial=int(tst["serial_number"].native),
        policy=str(tst["policy"].dotted),
        tsa_name=_render_general_name(tst["tsa"]) if tsa_name else None,
        accuracy=_decode_accuracy(tst["accuracy"]),
        digest=bytes(imprint["hashed_message"].native),
        nonce=None if tst["nonce"].native is None else int(tst["nonce"].native),
        ordering=bool(tst["ordering"].native),
    )
    return info, tsa_name


def _decode_accuracy(accuracy: Any) -> timedelta | None:
    """Decode an Accuracy; millis and micros must lie in 1..999 (RFC 3161 section 2.4.2)."""
    if accuracy.native is None:
        return None
    parts = accuracy.native
    for unit in ("millis", "micros"):
        if parts[unit] is not None and not 1 <= parts[unit] <= 999:
            raise TimestampError(f"time-stamp token's accuracy has {unit} outside 1..999")
    seconds = parts["seconds"] or 0
    if seconds < 0:
        raise TimestampError("time-stamp token's accuracy is negative")
    return timedelta(
        seconds=seconds, milliseconds=parts["millis"] or 0, microseconds=parts["micros"] or 0
    )


def _decode_signer(signer_info: Any) -> Signer:
    """Decode the SignerInfo and the signed attributes a time-stamp token must have."""
    sid = signer_info["sid"]
    version = signer_info["version"].native
    issuer = serial = key_id = None
    if sid.name == "issuer_and_serial_number" and version == "v1":
        issuer = sid.chosen["issuer"].dump()
        serial = int(sid.chosen["serial_number"].native)
    elif sid.name == "subject_key_identifier" and version == "v3":
        key_id = bytes(sid.chosen.native)
    else:
        raise TimestampError(f"time-stamp token's signer has version {version} for a {sid.name}")
    attributes = signer_info["signed_attrs"]
    if attributes.native is None:
        raise TimestampError("time-stamp token's signer has no signed attributes")
    values: dict[str, Any] = {}
    for attribute in attributes:
        kind = attribute["type"].dotted
        if kind in values:
            raise TimestampError(f"time-stamp token repeats the signed attribute {kind}")
        found = list(attribute["values"])
        if len(found) != 1:
            raise TimestampError(
                f"time-stamp token's signed attribute {kind} has {len(found)} values, not one"
            )
        values[kind] = found[0]
    for required in (_ATTR_CONTENT_TYPE, _ATTR_MESSAGE_DIGEST):
        if required not in values:
            raise TimestampError(f"time-stamp token lacks the signed attribute {required}")
    content_type = values[_ATTR_CONTENT_TYPE]
    message_digest = values[_ATTR_MESSAGE_DIGEST]
    if not isinstance(content_type, cms.ContentType) or not isinstance(
        message_digest, core.OctetString
    ):
        raise TimestampError("time-stamp token's contentType or messageDigest is malformed")
    return Signer(
        issuer=issuer,
        serial=serial,
        key_id=key_id,
        digest_oid=_algorithm(signer_info["digest_algorithm"], "signer digest"),
        signature_oid=_algorithm(signer_info["signature_algorithm"], "signature"),
        signature=bytes(signer_info["signature"].native),
        # The signature covers the attributes encoded as a SET OF (tag 0x31), not as the
        # [0] IMPLICIT field they travel in (RFC 5652 section 5.4).
        signed_attributes=parser.emit(0, 1, 17, attributes.contents),
        content_type=str(content_type.dotted),
        message_digest=bytes(message_digest.native),
        cert_ids=_decode_cert_ids(values.get(_ATTR_SIGNING_CERTIFICATE_V2), v2=True),
        cert_ids_v1=_decode_cert_ids(values.get(_ATTR_SIGNING_CERTIFICATE), v2=False),
    )


def _decode_cert_ids(value: Any, *, v2: bool) -> tuple[_CertId, ...]:
    """Decode a SigningCertificate(V2) attribute value into its certificate identifiers."""
    if value is None:
        return ()
    expected = tsp.SigningCertificateV2 if v2 else tsp.SigningCertificate
    if not isinstance(value, expected):
        raise TimestampError("time-stamp token's signing-certificate attribute is malformed")
    ids = []
    for cert_id in value["certs"]:
        hash_oid = _algorithm(cert_id["hash_algorithm"], "ESSCertIDv2") if v2 else SHA1_OID
        issuer_serial = cert_id["issuer_serial"]
        names: tuple[bytes, ...] = ()
        serial = None
        if issuer_serial.native is not None:
            names = tuple(
                name.chosen.untag().dump() if name.name == "directory_name" else b""
                for name in issuer_serial["issuer"]
            )
            serial = int(issuer_serial["serial_number"].native)
        ids.append(_CertId(hash_oid, bytes(cert_id["cert_hash"].native), names, serial))
    if not ids:
        raise TimestampError(
            "time-stamp token's signing-certificate attribute names no certificate"
        )
    return tuple(ids)


def _decode_certificates(choices: Any) -> tuple[x509.Certificate, ...]:
    """Load the X.509 certificates a token carries; other certificate kinds are refused."""
    if choices.native is None:
        return ()
    carried = []
    for choice in choices:
        if choice.name != "certificate":
            raise TimestampError(f"time-stamp token carries an unsupported {choice.name}")
        try:
            carried.append(x509.load_der_x509_certificate(choice.chosen.dump()))
        except (ValueError, x509.InvalidVersion) as exc:
            raise TimestampError(
                f"time-stamp token carries a malformed certificate: {exc}"
            ) from exc
    return tuple(carried)


def _algorithm(identifier: Any, what: str) -> str:
    """Return an AlgorithmIdentifier's OID, refusing parameters other than absent or NULL."""
    oid = str(identifier["algorithm"].dotted)
    if identifier["parameters"].dump() not in (b"", b"\x05\x00"):
        raise TimestampError(f"time-stamp token's {what} algorithm {oid} has unexpected parameters")
    return oid


def _decode_general_name(name: Any) -> tuple[str, bytes | str]:
    """Return a GeneralName's kind and value (DER for a directory name, text otherwise)."""
    kind = str(name.name)
    if kind == "directory_name":
        return kind, bytes(name.chosen.untag().dump())
    value = name.chosen.native
    if kind in ("dns_name", "uniform_resource_identifier", "rfc822_name"):
        return kind, str(value)
    raise TimestampError(f"time-stamp token names its TSA with an unsupported {kind}")


def _render_general_name(name: Any) -> str:
    """Render a GeneralName for people: RFC 4514 for a directory name, ``DNS:``/``URI:`` else."""
    kind = str(name.name)
    if kind != "directory_name":
        prefix = {"dns_name": "DNS", "uniform_resource_identifier": "URI", "rfc822_name": "email"}
        return f"{prefix[kind]}:{name.chosen.native}"
    rdns = []
    for rdn in reversed(list(name.chosen.chosen)):
        values = []
        for pair in rdn:
            oid = str(pair["type"].dotted)
            value = pair["value"].native
            if isinstance(value, str):
                text = _escape_rdn(value)
            else:  # RFC 4514 section 2.4: a value without a string form is written as hex DER
                text = "#" + pair["value"].dump().hex()
            values.append(f"{_SHORT_NAMES.get(oid, oid)}={text}")
        rdns.append("+".join(values))
    return ",".join(rdns)


def _escape_rdn(value: str) -> str:
    """Escape an attribute value as RFC 4514 section 2.4 requires."""
    escaped = "".join("\\" + char if char in ',+"\\<>;' else char for char in value)
    if escaped[:1] in ("#", " "):
        escaped = "\\" + escaped
    if escaped.endswith(" ") and not escaped.endswith("\\ "):
        escaped = escaped[:-1] + "\\ "
    return escaped

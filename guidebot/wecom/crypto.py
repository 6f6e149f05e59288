"""WeCom callback crypto (WXBizMsgCrypt, XML flavour) on top of wechatpy's WeChatCrypto.

wechatpy supplies the key derivation and the AES-256-CBC cipher. What it lacks we add here:
constant-time signature checks, strict PKCS#7 and length validation, a CSPRNG random prefix,
and a single error type, so the callback endpoint can answer every bad request with a 4xx.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring
from wechatpy.enterprise.crypto import PrpCrypto, WeChatCrypto

from guidebot.wecom.flatxml import flat_children

_BLOCK = 32  # WeCom pads to 32 bytes, not AES's 16
_RANDOM_PREFIX = 16
MAX_BODY_BYTES = 256 * 1024  # a real callback is a few KiB; anything larger is refused unread
_ENVELOPE = """<xml>
<Encrypt><![CDATA[{encrypt}]]></Encrypt>
<MsgSignature><![CDATA[{signature}]]></MsgSignature>
<TimeStamp>{timestamp}</TimeStamp>
<Nonce><![CDATA[{nonce}]]></Nonce>
</xml>"""


class CryptoError(ValueError):
    """A callback that fails verification or decryption; `reason` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SignatureError(CryptoError):
    """The msg_signature does not match: the request did not come from WeCom."""


def signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    """sha1 over the four strings sorted lexicographically, lower-case hex."""
    joined = "".join(sorted([token, timestamp, nonce, encrypted]))
    return hashlib.sha1(joined.encode()).hexdigest()


def read_envelope(body: bytes | str) -> dict[str, str]:
    """The outer XML of a callback or a passive reply: child element name -> text.

    Parsed with defusedxml (no DTDs, no entities) after a size check, unless it has the flat
    shape WeCom sends, which is read without building a tree (see flatxml).
    """
    raw = body.encode() if isinstance(body, str) else body
    if len(raw) > MAX_BODY_BYTES:
        raise CryptoError(f"body over {MAX_BODY_BYTES} bytes")
    flat = flat_children(raw)
    if flat is not None:
        return dict(flat)
    try:
        root = fromstring(raw, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise CryptoError("DTDs and entity declarations are not allowed") from exc
    except (ParseError, ValueError) as exc:
        raise CryptoError(f"malformed XML: {exc}") from exc
    return {child.tag: (child.text or "").strip() for child in root}


def encrypted_field(body: bytes | str) -> str:
    """The `Encrypt` text of a POSTed callback body."""
    encrypted = read_envelope(body).get("Encrypt")
    if not encrypted:
        raise CryptoError("body has no Encrypt element")
    return encrypted


class _CsprngPrpCrypto(PrpCrypto):
    # wechatpy draws the 16-byte prefix from `random`; it is only a salt, but costs nothing to fix.
    def get_random_string(self) -> str:
        return secrets.token_hex(_RANDOM_PREFIX // 2)


@dataclass(frozen=True, slots=True)
class EncryptedMessage:
    encrypt: str
    signature: str
    timestamp: str
    nonce: str

    def envelope(self) -> str:
        """The passive-reply XML (reference §1.4)."""
        return _ENVELOPE.format(
            encrypt=self.encrypt,
            signature=self.signature,
            timestamp=self.timestamp,
            nonce=self.nonce,
        )


class CallbackCrypto:
    """Verify, decrypt and encrypt callbacks for one (token, EncodingAESKey, receive id)."""

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        try:
            self._wechat = WeChatCrypto(token, encoding_aes_key, receive_id)
        except (binascii.Error, AssertionError, ValueError) as exc:
            raise CryptoError("EncodingAESKey is not 43 characters of base64") from exc
        self.token = token
        self.receive_id = receive_id
        self._prp = _CsprngPrpCrypto(self._wechat.key)

    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> None:
        expected = signature(self.token, timestamp, nonce, encrypted)
        given = msg_signature.strip().lower()
        # compare_digest refuses non-ASCII str; a signature is hex, so such input is just wrong.
        if not given.isascii() or not hmac.compare_digest(expected, given):
            raise SignatureError("signature mismatch")

    def decrypt(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> str:
        """Check the signature over `encrypted` and return the plaintext it carries."""
        self.verify(msg_signature, timestamp, nonce, encrypted)
        return self.decrypt_unverified(encrypted)

    def decrypt_unverified(self, encrypted: str) -> str:
        try:
            ciphertext = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CryptoError("Encrypt is not valid base64") from exc
        if not ciphertext or len(ciphertext) % 16:
            raise CryptoError("ciphertext length is not a multiple of the AES block")
        padded = self._prp.cipher.decrypt(ciphertext)
        pad = padded[-1]
        if not 1 <= pad <= _BLOCK or padded[-pad:] != bytes([pad]) * pad:
            raise CryptoError("bad padding")
        content = padded[_RANDOM_PREFIX:-pad]
        if len(content) < 4:
            raise CryptoError("message too short")
        (length,) = struct.unpack(">I", content[:4])
        if length > len(content) - 4:
            raise CryptoError("message length exceeds payload")
        message, receive_id = content[4 : 4 + length], content[4 + length :]
        if not hmac.compare_digest(receive_id, self.receive_id.encode()):
            raise CryptoError("receive id does not match the corp id")
        try:
            return message.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CryptoError("message is not UTF-8") from exc

    def encrypt(self, plaintext: str, *, timestamp: str, nonce: str) -> EncryptedMessage:
        encrypted = self._prp.encrypt(plaintext, self.receive_id).decode()
        return EncryptedMessage(
            encrypt=encrypted,
            signature=signature(self.token, timestamp, nonce, encrypted),
            timestamp=timestamp,
            nonce=nonce,
        )

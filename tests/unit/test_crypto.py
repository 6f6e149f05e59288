"""WXBizMsgCrypt against Tencent's official vectors (reference §1.5) and every failure mode."""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wechatpy.enterprise.crypto import WeChatCrypto

from guidebot.wecom.crypto import (
    CallbackCrypto,
    CryptoError,
    SignatureError,
    encrypted_field,
    read_envelope,
    signature,
)

# Official vector set from Tencent's PHP sample (weworkapi_php callback/Sample.php).
TOKEN = "QDG6eK"
CORP_ID = "wx5823bf96d3bd56c7"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
ECHO_SIGNATURE = "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3"
ECHO_TIMESTAMP = "1409659589"
ECHO_NONCE = "263014780"
ECHOSTR = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
POST_SIGNATURE = "477715d11cdb4164915debcba66cb864d751f3e6"
POST_TIMESTAMP = "1409659813"
POST_NONCE = "1372623149"
POST_BODY = (
    "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName><Encrypt><![CDATA["
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3Qcz"
    "cdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjv"
    "d4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnv"
    "w2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k2"
    "2Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2Yoyy"
    "H2uyPIGHBZZIs2pDBS8R07+qN+E7Q==]]></Encrypt><AgentID><![CDATA[218]]></AgentID></xml>"
)
POST_PLAINTEXT = (
    "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n"
    "<FromUserName><![CDATA[mycreate]]></FromUserName>\n"
    "<CreateTime>1409659813</CreateTime>\n"
    "<MsgType><![CDATA[text]]></MsgType>\n"
    "<Content><![CDATA[hello]]></Content>\n"
    "<MsgId>4561255354251345929</MsgId>\n"
    "<AgentID>218</AgentID>\n"
    "</xml>"
)


@pytest.fixture
def crypto() -> CallbackCrypto:
    return CallbackCrypto(TOKEN, AES_KEY, CORP_ID)


def test_official_url_verification_vector(crypto):
    assert signature(TOKEN, ECHO_TIMESTAMP, ECHO_NONCE, ECHOSTR) == ECHO_SIGNATURE
    assert crypto.decrypt(ECHO_SIGNATURE, ECHO_TIMESTAMP, ECHO_NONCE, ECHOSTR) == (
        "1616140317555161061"
    )


def test_official_post_vector_decrypts_byte_for_byte(crypto):
    encrypted = encrypted_field(POST_BODY)
    assert signature(TOKEN, POST_TIMESTAMP, POST_NONCE, encrypted) == POST_SIGNATURE
    assert crypto.decrypt(POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE, encrypted) == POST_PLAINTEXT


def test_secondary_official_vector_from_the_python_sample():
    crypto = CallbackCrypto(
        "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo",
        "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt",
        "ww1436e0e65a779aee",
    )
    echostr = (
        "fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnFyq6SVHyA=="
    )
    plaintext = crypto.decrypt(
        "012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb", "1476416373", "47744683", echostr
    )
    assert plaintext == "1288432023552776189"


def test_encrypt_round_trips_and_wechatpy_agrees(crypto):
    message = crypto.encrypt(
        "<xml><Content>你好</Content></xml>", timestamp="1700000000", nonce="42"
    )
    assert crypto.decrypt(message.signature, "1700000000", "42", message.encrypt) == (
        "<xml><Content>你好</Content></xml>"
    )
    independent = WeChatCrypto(TOKEN, AES_KEY, CORP_ID)
    assert independent.decrypt_message(
        message.envelope(), message.signature, "1700000000", "42"
    ) == ("<xml><Content>你好</Content></xml>")


def test_two_encryptions_of_one_message_differ(crypto):
    first = crypto.encrypt("same", timestamp="1", nonce="n")
    second = crypto.encrypt("same", timestamp="1", nonce="n")
    assert first.encrypt != second.encrypt  # the random prefix differs


def test_wrong_signature_is_a_signature_error(crypto):
    with pytest.raises(SignatureError, match="signature mismatch"):
        crypto.decrypt("0" * 40, ECHO_TIMESTAMP, ECHO_NONCE, ECHOSTR)


def test_signature_over_other_timestamp_is_refused(crypto):
    with pytest.raises(SignatureError):
        crypto.decrypt(ECHO_SIGNATURE, "1409659590", ECHO_NONCE, ECHOSTR)


def test_wrong_corp_id_is_refused():
    other = CallbackCrypto(TOKEN, AES_KEY, "wwsomeoneelse")
    with pytest.raises(CryptoError, match="receive id"):
        other.decrypt(ECHO_SIGNATURE, ECHO_TIMESTAMP, ECHO_NONCE, ECHOSTR)


def _signed(crypto: CallbackCrypto, encrypted: str) -> str:
    return signature(crypto.token, "1", "2", encrypted)


def test_bad_base64_is_refused(crypto):
    garbage = "not*base64!"
    with pytest.raises(CryptoError, match="base64"):
        crypto.decrypt(_signed(crypto, garbage), "1", "2", garbage)


def test_bad_padding_is_refused(crypto):
    # Encrypt a block whose last byte is 0: never a valid PKCS#7 pad.
    raw = crypto._prp.cipher.encrypt(b"\x00" * 32)
    encrypted = base64.b64encode(raw).decode()
    with pytest.raises(CryptoError, match="padding"):
        crypto.decrypt(_signed(crypto, encrypted), "1", "2", encrypted)


def test_length_beyond_payload_is_refused(crypto):
    # 16 random bytes, a length of 1000, then only a few bytes and a valid pad.
    body = b"r" * 16 + (1000).to_bytes(4, "big") + b"short"
    pad = 32 - len(body) % 32
    raw = crypto._prp.cipher.encrypt(body + bytes([pad]) * pad)
    encrypted = base64.b64encode(raw).decode()
    with pytest.raises(CryptoError, match="length"):
        crypto.decrypt(_signed(crypto, encrypted), "1", "2", encrypted)


def test_ciphertext_not_a_block_multiple_is_refused(crypto):
    encrypted = base64.b64encode(b"x" * 20).decode()
    with pytest.raises(CryptoError, match="block"):
        crypto.decrypt(_signed(crypto, encrypted), "1", "2", encrypted)


def test_invalid_aes_key_is_refused():
    with pytest.raises(CryptoError, match="EncodingAESKey"):
        CallbackCrypto(TOKEN, "short", CORP_ID)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('<!DOCTYPE x [<!ENTITY a "b">]><xml><Encrypt>&a;</Encrypt></xml>', "entity"),
        ("<xml><Encrypt>abc</Encrypt>", "malformed"),
        ("<xml><ToUserName>x</ToUserName></xml>", "no Encrypt"),
        ("<xml>" + "x" * (300 * 1024) + "</xml>", "over"),
    ],
)
def test_envelope_refuses_hostile_bodies(body, reason):
    with pytest.raises(CryptoError, match=reason):
        encrypted_field(body)


def test_envelope_reads_children_by_name():
    assert read_envelope("<xml><B>2</B><A> 1 </A></xml>") == {"A": "1", "B": "2"}


@given(st.text(max_size=200))
def test_arbitrary_ciphertext_raises_only_crypto_errors(text):
    crypto = CallbackCrypto(TOKEN, AES_KEY, CORP_ID)
    with contextlib.suppress(CryptoError):
        crypto.decrypt(signature(TOKEN, "1", "2", text), "1", "2", text)


def test_a_non_ascii_signature_is_a_signature_error(crypto):
    with pytest.raises(SignatureError):
        crypto.decrypt("签名" * 20, ECHO_TIMESTAMP, ECHO_NONCE, ECHOSTR)

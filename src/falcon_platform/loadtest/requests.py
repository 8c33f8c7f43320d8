"""The requests a load test sends: target URL, endpoint body, texts, raw HTTP/1.1 bytes.

Each request is built as bytes once, just before it is sent (a few microseconds)::

    target = Target.parse("http://127.0.0.1:8000")
    source = RequestSource(target, endpoint="infer", texts="unique")
    source.build(17)        # b"POST /infer HTTP/1.1\\r\\nHost: ...\\r\\n\\r\\n{\\"text\\":...}"
"""

from __future__ import annotations

import csv
import io
import secrets
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal
from urllib.parse import urlsplit

import orjson

from falcon_platform.errors import InvalidInputError

Endpoint = Literal["infer", "batch", "v2"]
Texts = Literal["unique", "repeated", "corpus"]
ENDPOINTS: tuple[Endpoint, ...] = ("infer", "batch", "v2")
TEXTS: tuple[Texts, ...] = ("unique", "repeated", "corpus")

REPEATED_TEXT = "great screen but the battery died after two days"
_WORDS = ("great", "terrible", "battery", "screen", "service", "slow", "fast", "not", "bad",
          "love", "refund", "okay", "delivery", "food", "app", "support", "price")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    base_path: str = ""
    uds: str | None = None  # a UNIX socket to connect to instead (a worker's admin socket)

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http":
            raise InvalidInputError(
                f"target {url!r}: only http:// is supported (the generator measures Falcon "
                "itself; put TLS in front of it, not in the load test)"
            )
        if not parts.hostname:
            raise InvalidInputError(f"target {url!r} has no host: write http://HOST:PORT")
        try:
            port = parts.port or 80
        except ValueError:
            raise InvalidInputError(f"target {url!r}: the port is not a number") from None
        return cls(parts.hostname, port, parts.path.rstrip("/"))

    @property
    def url(self) -> str:
        if self.uds is not None:
            return f"http+unix://{self.uds}{self.base_path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.base_path}"


@cache
def corpus_texts() -> tuple[str, ...]:
    """The texts of the corpus shipped with the default model (1,050 real-looking reviews)."""
    raw = (resources.files("falcon_platform.model") / "data" / "sentiment.csv").read_text("utf-8")
    return tuple(row["text"] for row in csv.DictReader(io.StringIO(raw)) if row.get("text"))


class RequestSource:
    """Builds request ``i`` as raw bytes: POST to the endpoint with the chosen texts."""

    def __init__(
        self,
        target: Target,
        *,
        endpoint: Endpoint = "infer",
        texts: Texts = "corpus",
        model_name: str = "sentiment",
        batch_size: int = 8,
        keep_alive: bool = True,
        request_id_prefix: str | None = None,
        run_tag: str | None = None,
        corpus: tuple[str, ...] | None = None,
    ) -> None:
        if endpoint not in ENDPOINTS:
            raise InvalidInputError(f"endpoint {endpoint!r}: choose one of {', '.join(ENDPOINTS)}")
        if texts not in TEXTS:
            raise InvalidInputError(f"texts {texts!r}: choose one of {', '.join(TEXTS)}")
        self.endpoint, self.texts, self.batch_size = endpoint, texts, max(1, batch_size)
        self.path = {
            "infer": "/infer",
            "batch": "/infer/batch",
            "v2": f"/v2/models/{model_name}/infer",
        }[endpoint]
        host = f"{target.host}:{target.port}"
        self._head = (
            f"POST {target.base_path}{self.path} HTTP/1.1\r\nHost: {host}\r\n"
            "User-Agent: falcon-loadtest\r\nContent-Type: application/json\r\n"
            + ("" if keep_alive else "Connection: close\r\n")
        ).encode()
        self._rid = request_id_prefix
        # A fresh tag per run: unique texts never hit a cache warmed by an earlier run.
        self._tag = run_tag or secrets.token_hex(3)
        self._corpus = (corpus or corpus_texts()) if texts == "corpus" else ()

    def request_id(self, i: int) -> str | None:
        return None if self._rid is None else f"{self._rid}{i:08d}"

    def text(self, i: int) -> str:
        if self.texts == "repeated":
            return REPEATED_TEXT
        if self.texts == "corpus":
            return self._corpus[i % len(self._corpus)]
        n = len(_WORDS)
        return (f"{_WORDS[i % n]} {_WORDS[(i * 7) % n]} {_WORDS[(i * 13) % n]} review {i} "
                f"r{self._tag}")  # fmt: skip

    def body(self, i: int) -> bytes:
        if self.endpoint == "infer":
            return orjson.dumps({"text": self.text(i)})
        if self.endpoint == "batch":
            k = self.batch_size
            return orjson.dumps({"texts": [self.text(i * k + j) for j in range(k)]})
        return orjson.dumps(  # v2: one text per request, like most v2 clients send
            {
                "inputs": [
                    {"name": "text", "shape": [1], "datatype": "BYTES", "data": [self.text(i)]}
                ]
            }
        )

    def build(self, i: int) -> bytes:
        body = self.body(i)
        rid = self.request_id(i)
        extra = f"X-Request-ID: {rid}\r\n".encode() if rid is not None else b""
        return b"%sContent-Length: %d\r\n%s\r\n%s" % (self._head, len(body), extra, body)

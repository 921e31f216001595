"""An MQTT subscription as an asyncio source with manual acknowledgement.

aiomqtt acknowledges a QoS 1 message as soon as paho has read it; the gateway must acknowledge only
after the message's samples are committed (DESIGN.md, Guarantees).  paho-mqtt 2.x can do that
(``manual_ack=True`` then ``Client.ack(mid, qos)``), so this module drives paho the way aiomqtt does
(aiomqtt ``client.py``: ``add_reader``/``add_writer`` on paho's socket, ``loop_misc`` once a second,
the blocking ``connect`` in an executor) and turns every callback into a list or a future here and
nowhere else: users see ``async for batch in source`` and ``source.ack(message)``.

A persistent session makes the broker keep what arrives while we are away and redeliver what we did
not acknowledge: a fixed client id with MQTT 5 ``clean_start=False`` and Session Expiry Interval > 0
(MQTT 5.0 §3.1.2.4, §3.1.2.11.2), or MQTT 3.1.1 clean session 0 (§3.1.2.4).  Receive Maximum
(MQTT 5.0 §3.1.2.11.3) caps the QoS 1 messages the broker has in flight to us; with 3.1.1 only the
broker's own setting does (mosquitto ``max_inflight_messages``).  Acknowledgements of a connection
that has since dropped are not sent: packet ids restart with the new connection and the broker
redelivers those messages anyway (MQTT 5.0 §4.4).

Bounded memory under a hostile publisher: MQTT 5 Maximum Packet Size (§3.1.2.11.4) makes the broker
discard, not send, a packet larger than ``max_packet_bytes``; and once the messages received but not
yet taken by the consumer reach ``max_buffered_bytes`` (or ``max_buffered_messages``) the socket is
not read until they are taken, so the broker and TCP hold the rest instead of our heap (the Receive
Maximum bounds QoS 1 messages only, and 1,000 messages of 60 KB are 60 MB).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from drivers.backoff import Backoff
from drivers.errors import MqttConnectError
from drivers.tls import client_context

_AUTH_FAILURES = {"Not authorized", "Bad user name or password", "Bad username or password", "Banned",
                  "Client identifier not valid", "Identifier rejected"}


@dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    host: str
    port: int
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    check_hostname: bool = True
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"{'mqtts' if self.ca_file else 'mqtt'}://{self.host}:{self.port}"


class InboundMessage(NamedTuple):
    topic: bytes  # raw: a topic need not be valid UTF-8 to be counted and dead-lettered
    payload: bytes
    qos: int
    mid: int
    dup: bool
    generation: int  # connection number; an ack for an older connection is not sent
    arrival_ns: int


@dataclass
class SourceStats:
    connected: bool = False
    subscribed: bool = False  # SUBACK received on the current connection: messages now reach us
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    received: int = 0
    acked: int = 0
    stale_acks: int = 0  # acks skipped because their connection had dropped
    session_present: bool = False
    broker: str = ""
    last_error: str = ""


class MqttSource:
    """``async with MqttSource(...) as src: async for batch in src: ...; src.ack(msg)``."""

    def __init__(self, brokers: list[BrokerEndpoint], client_id: str, subscriptions: list[tuple[str, int]], *,
                 mqtt5: bool = True, session_expiry_s: int = 86400, receive_maximum: int = 1000,
                 keepalive_s: int = 30, reconnect_min_s: float = 0.5, reconnect_max_s: float = 30.0,
                 connect_timeout_s: float = 10.0, max_packet_bytes: int | None = None,
                 max_buffered_bytes: int = 2 << 20, max_buffered_messages: int = 10_000,
                 logger: logging.Logger | None = None) -> None:
        if not brokers:
            raise ValueError("at least one broker is needed")
        self.brokers, self.client_id, self.subscriptions = brokers, client_id, subscriptions
        self.mqtt5, self.session_expiry_s, self.receive_maximum = mqtt5, session_expiry_s, receive_maximum
        self.keepalive_s, self.connect_timeout_s = keepalive_s, connect_timeout_s
        self.max_packet_bytes = max_packet_bytes
        self.max_buffered_bytes, self.max_buffered_messages = max_buffered_bytes, max_buffered_messages
        self.reconnect_min_s, self.reconnect_max_s = reconnect_min_s, reconnect_max_s
        self.log = logger or logging.getLogger("pedf.mqtt")
        self.stats = SourceStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: paho.Client | None = None
        self._generation = 0
        self._batch: list[InboundMessage] = []
        self._batch_bytes = 0
        self._paused: tuple[paho.Client, Any, Any] | None = None  # (client, socket, reader) not being read
        self._wake = asyncio.Event()
        self._lost = False
        self._connack: asyncio.Future[tuple[Any, bool]] | None = None
        self._suback: asyncio.Future[list[Any]] | None = None
        self._next_broker = 0
        self._backoff = Backoff(reconnect_min_s, reconnect_max_s)
        self._last_misc = 0.0
        self._loop_thread = threading.get_ident()

    # -- lifecycle -----------------------------------------------------------------------------
    async def __aenter__(self) -> MqttSource:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        client, self._client = self._client, None
        self._paused = None
        if client is not None:
            sock = client.socket()
            client.disconnect()  # MQTT 5: no Will, session kept (expiry set at connect)
            if sock is not None and sock.fileno() >= 0:
                self._loop.remove_reader(sock.fileno())  # type: ignore[union-attr]
                self._loop.remove_writer(sock.fileno())  # type: ignore[union-attr]
                sock.close()
        self.stats.connected = self.stats.subscribed = False

    def __aiter__(self) -> MqttSource:
        return self

    async def __anext__(self) -> list[InboundMessage]:
        while True:
            if self._batch:
                batch, self._batch, self._batch_bytes = self._batch, [], 0
                self._resume()
                return batch
            if self._lost or self._client is None:
                await self._reconnect()
                continue
            self._wake.clear()
            now = time.monotonic()
            if now - self._last_misc >= 1.0:
                self._last_misc = now
                if self._client.loop_misc() != paho.MQTT_ERR_SUCCESS:  # keepalive PINGREQ, ping timeout
                    self._connection_lost("keepalive: no answer from the broker")
                    continue
            try:
                async with asyncio.timeout(1.0):
                    await self._wake.wait()
            except TimeoutError:
                pass

    # -- acknowledging -------------------------------------------------------------------------
    def ack(self, message: InboundMessage) -> bool:
        """PUBACK ``message`` if its connection is still the current one; False when skipped."""
        if message.qos == 0:
            return True
        if message.generation != self._generation or self._lost or self._client is None:
            self.stats.stale_acks += 1
            return False
        self._client.ack(message.mid, message.qos)
        self.stats.acked += 1
        return True

    def drop(self, reason: str) -> None:
        """Close the connection and reconnect: the broker then redelivers every unacknowledged message."""
        if self._client is not None and not self._lost:
            self._connection_lost(reason)

    # -- connecting ----------------------------------------------------------------------------
    async def _reconnect(self) -> None:
        """Connect to the next broker, with capped exponential backoff between failed attempts."""
        self.close()
        while True:
            broker = self.brokers[self._next_broker % len(self.brokers)]
            try:
                await self.connect(broker)
                self._backoff.reset()
                return
            except MqttConnectError as exc:
                self.stats.connect_failures += 1
                self.stats.last_error = str(exc)
                delay = self._backoff.next_delay()
                self.log.error("MQTT connection failed, retrying in %.1f s: %s", delay, exc)
                self._next_broker += 1
                self.close()
                await asyncio.sleep(delay)

    async def connect(self, broker: BrokerEndpoint) -> bool:
        """One attempt: connect, wait for CONNACK, subscribe.  Returns session_present."""
        loop = self._loop or asyncio.get_running_loop()
        self._loop, self._loop_thread = loop, threading.get_ident()
        client = self._make_client(broker)
        self._generation += 1
        self._lost = False
        self._connack = loop.create_future()
        self._suback = None
        self._client = client
        try:
            if self.mqtt5:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = self.session_expiry_s
                props.ReceiveMaximum = self.receive_maximum
                if self.max_packet_bytes is not None:
                    props.MaximumPacketSize = self.max_packet_bytes
                connect = lambda: client.connect(broker.host, broker.port, self.keepalive_s,  # noqa: E731
                                                 clean_start=False, properties=props)
            else:
                connect = lambda: client.connect(broker.host, broker.port, self.keepalive_s)  # noqa: E731
            await loop.run_in_executor(None, connect)
        except (OSError, ValueError, paho.WebsocketConnectionError) as exc:
            raise MqttConnectError(broker.label, f"cannot connect: {exc}") from None
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                reason, session_present = await self._connack
        except TimeoutError:
            raise MqttConnectError(broker.label, f"no CONNACK within {self.connect_timeout_s} s") from None
        except ConnectionError as exc:
            raise MqttConnectError(broker.label, str(exc)) from None
        if reason.is_failure:
            text = str(reason)
            raise MqttConnectError(broker.label, f"connection refused: {text}", refused=text in _AUTH_FAILURES)
        self.stats.connects += 1
        self.stats.connected, self.stats.session_present, self.stats.broker = True, session_present, broker.label
        await self._subscribe(broker)
        self.stats.subscribed = True
        self.log.info("MQTT connected to %s (session present: %s)", broker.label, session_present)
        return session_present

    async def _subscribe(self, broker: BrokerEndpoint) -> None:
        if not self.subscriptions or self._client is None:
            return
        self._suback = self._loop.create_future()  # type: ignore[union-attr]
        if self.mqtt5:
            topics = [(t, SubscribeOptions(qos=q)) for t, q in self.subscriptions]
        else:
            topics = list(self.subscriptions)
        self._client.subscribe(topics)
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                codes = await self._suback
        except TimeoutError:
            raise MqttConnectError(broker.label, "no SUBACK") from None
        except ConnectionError as exc:
            raise MqttConnectError(broker.label, str(exc)) from None
        for (topic, _), code in zip(self.subscriptions, codes, strict=False):
            if code.is_failure:
                self.log.error("MQTT broker %s refused the subscription %s: %s", broker.label, topic, code)

    def _make_client(self, broker: BrokerEndpoint) -> paho.Client:
        if self.mqtt5:
            client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                 protocol=paho.MQTTv5, manual_ack=True)
        else:
            client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False,
                                 protocol=paho.MQTTv311, manual_ack=True)
        if broker.ca_file:
            client.tls_set_context(client_context(broker.ca_file, broker.cert_file, broker.key_file,
                                                  check_hostname=broker.check_hostname))
        if broker.username is not None:
            client.username_pw_set(broker.username, broker.password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        return client

    def _connection_lost(self, reason: str) -> None:
        if not self._lost:
            self._lost = True
            self.stats.connected = self.stats.subscribed = False
            self.stats.disconnects += 1
            self.stats.last_error = reason
            self.log.warning("MQTT connection lost: %s", reason)
        for fut in (self._connack, self._suback):
            if fut is not None and not fut.done():
                fut.set_exception(ConnectionError(reason))
        self._wake.set()

    # -- paho callbacks: the only place that sees them -----------------------------------------
    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if client is self._client and self._connack is not None and not self._connack.done():
            self._connack.set_result((reason, bool(flags.session_present)))

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, codes: list[Any], props: Any) -> None:
        if client is self._client and self._suback is not None and not self._suback.done():
            self._suback.set_result(codes)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if client is self._client:
            self._connection_lost(f"disconnected: {reason}")

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        self._batch.append(InboundMessage(msg._topic, msg.payload, msg.qos, msg.mid, bool(msg.dup),
                                          self._generation, time.time_ns()))
        self._batch_bytes += len(msg.payload) + len(msg._topic) + 64
        self.stats.received += 1
        self._wake.set()

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        buffer = _ReadBuffer(client._sock_recv)
        client._sock_recv = buffer  # type: ignore[method-assign]

        def readable() -> None:
            try:
                while client.loop_read() == paho.MQTT_ERR_SUCCESS and client._sock is not None:
                    if self._full():  # the consumer is behind: leave the rest with TCP and the broker
                        self._pause(client, sock, readable)
                        break
                    tls_pending = getattr(client._sock, "pending", None)  # TLS: decrypted, not yet read
                    if buffer.pending() <= 0 and (tls_pending is None or tls_pending() <= 0):
                        break
            # backstop: paho raises socket, ssl and protocol errors straight from the read; one escaping
            # a reader callback would only be logged by asyncio and the connection never marked lost
            except Exception as exc:
                if client is self._client:
                    self._connection_lost(f"read failed: {exc!r}")

        self._on_loop(client, sock, lambda: self._loop.add_reader(sock.fileno(), readable))  # type: ignore[union-attr]

    def _full(self) -> bool:
        return self._batch_bytes >= self.max_buffered_bytes or len(self._batch) >= self.max_buffered_messages

    def _pause(self, client: paho.Client, sock: Any, reader: Any) -> None:
        if self._paused is None and sock.fileno() >= 0:
            self._loop.remove_reader(sock.fileno())  # type: ignore[union-attr]
            self._paused = (client, sock, reader)

    def _resume(self) -> None:
        """The batch was taken: read the socket again, starting with what paho's buffer holds."""
        paused, self._paused = self._paused, None
        if paused is None:
            return
        client, sock, reader = paused
        if client is self._client and client.socket() is sock and sock.fileno() >= 0:
            self._loop.add_reader(sock.fileno(), reader)  # type: ignore[union-attr]
            self._loop.call_soon(reader)  # type: ignore[union-attr]

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        fd = sock.fileno()
        if fd < 0:
            return
        loop = self._loop
        assert loop is not None
        if threading.get_ident() == self._loop_thread:
            loop.remove_reader(fd)
            loop.remove_writer(fd)
        else:  # closed by a failed connect in the executor thread
            loop.call_soon_threadsafe(loop.remove_reader, fd)
            loop.call_soon_threadsafe(loop.remove_writer, fd)

    def _on_socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        def writable() -> None:
            try:
                client.loop_write()
            except Exception as exc:  # backstop, as for the reader: the loss must be seen
                if client is self._client:
                    self._connection_lost(f"write failed: {exc!r}")

        self._on_loop(client, sock, lambda: self._loop.add_writer(sock.fileno(), writable))  # type: ignore[union-attr]

    def _on_loop(self, client: paho.Client, sock: Any, register: Any) -> None:
        """Run ``register`` on the loop: now if called from it, else soon (paho's connect runs in an
        executor thread), and only if the socket is still this client's."""
        def guarded() -> None:
            if client is self._client and client.socket() is sock and sock.fileno() >= 0:
                register()

        if threading.get_ident() == self._loop_thread:
            guarded()
        else:
            self._loop.call_soon_threadsafe(guarded)  # type: ignore[union-attr]

    def _on_socket_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if sock.fileno() >= 0:
            self._loop.remove_writer(sock.fileno())  # type: ignore[union-attr]


class _ReadBuffer:
    """paho reads a packet in three ``recv`` calls (type, length, body); one 64 KiB ``recv`` serves
    hundreds of small PUBLISH packets instead, and the reader loops while bytes remain buffered
    (the socket is not readable for them any more)."""

    def __init__(self, recv: Any) -> None:
        self._recv = recv
        self._data = b""
        self._pos = 0

    def pending(self) -> int:
        return len(self._data) - self._pos

    def __call__(self, bufsize: int) -> bytes:
        if self._pos >= len(self._data):
            data = self._recv(65536)  # BlockingIOError and b"" (closed) go to paho as they are
            if not data:
                return data
            self._data, self._pos = data, 0
        start = self._pos
        self._pos = min(start + bufsize, len(self._data))
        return self._data[start:self._pos]

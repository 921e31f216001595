"""A pymodbus server for the Modbus client tests, run as its own process (the tests start it
through ``tests.servers.ModbusTestServer``).

    python tests/modbus_test_server.py CONFIG_JSON

CONFIG_JSON: {"tcp": [host, port]} or {"serial": "/dev/pts/N"}, "framer": "socket" | "rtu",
"devices": [{"id": 1, "registers": [...], "start": 0, "delay_s": 0.0, "delay_first_s": 0.0,
"counter": false}], "silent": false.

Each device serves ``registers`` as holding (and input) registers from ``start``; addresses
outside are illegal (exception code 2).  With any of "coils", "discretes" (lists of bools) or
"inputs", the device has four separate tables instead, each from address 0.  A device handles
one request at a time, as a real one does; ``delay_s`` makes it answer late (``delay_first_s``:
only its first read) and ``counter`` puts the number of reads served into its first register.
``silent`` accepts TCP connections and never answers anything; ``short`` answers every read of
N registers with N - 1 (a well-framed but malformed answer).  ``scripted``: {"registers": [...],
"control": PATH, "log": PATH} serves FC 03/04 from ``registers`` (address 0 up, any unit) by hand
and re-reads the JSON file ``control`` before every request: {"refuse": [addresses] (answered with
exception 2 when a read touches one), "exception": CODE (every read answered with it)}; each read
is appended to ``log`` as ``FC ADDRESS COUNT RESULT``.  Prints ``ready`` once listening.
"""

from __future__ import annotations

import asyncio
import json
import sys

from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice


def _action(device: dict):
    """Per-request hook: one request at a time (as a real device), optional delay and read counter."""
    delay_s, delay_first_s = device.get("delay_s", 0.0), device.get("delay_first_s", 0.0)
    counter = device.get("counter", False)
    busy = asyncio.Lock()
    reads = 0

    async def action(function_code, start_address, address, count, current_registers, set_values):
        nonlocal reads
        async with busy:
            if set_values is None:
                reads += 1
                if counter:
                    current_registers[0] = reads
            delay = delay_first_s if reads == 1 and delay_first_s else delay_s
            if delay:
                await asyncio.sleep(delay)
        return None

    return action


def _simdata(device: dict):
    """Shared registers, or separate coils / discrete inputs / holding / input registers."""
    holding = [SimData(device.get("start", 0), values=device["registers"], datatype=DataType.REGISTERS)]
    if not any(k in device for k in ("coils", "discretes", "inputs")):
        return holding
    return (
        [SimData(0, values=device.get("coils", [False]), datatype=DataType.BITS)],
        [SimData(0, values=device.get("discretes", [False]), datatype=DataType.BITS)],
        holding,
        [SimData(0, values=device.get("inputs", [0]), datatype=DataType.REGISTERS)],
    )


async def _silent(host: str, port: int) -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(1024):
            pass
        writer.close()

    server = await asyncio.start_server(swallow, host, port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


async def _short(host: str, port: int) -> None:
    """Modbus TCP (MBAP) framing by hand: answers FC 03/04 with one register too few."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(7)
                body = await reader.readexactly(int.from_bytes(head[4:6], "big") - 1)
                count = int.from_bytes(body[3:5], "big") - 1
                pdu = bytes([body[0], 2 * count]) + b"\x00\x01" * count
                writer.write(head[:4] + (len(pdu) + 1).to_bytes(2, "big") + head[6:7] + pdu)
        except asyncio.IncompleteReadError:
            writer.close()

    server = await asyncio.start_server(answer, host, port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


async def _scripted(host: str, port: int, script: dict) -> None:
    """Modbus TCP by hand, its behaviour read from a control file the test rewrites at will."""
    registers: list[int] = script["registers"]
    control_path, log_path = script.get("control"), script.get("log")

    def control() -> dict:
        try:
            with open(control_path, encoding="utf-8") as f:
                return json.load(f)
        except (TypeError, OSError, ValueError):
            return {}

    def respond(pdu: bytes) -> tuple[bytes, str]:
        fc = pdu[0]
        if fc not in (3, 4):
            return bytes([fc | 0x80, 1]), "x1"
        address, count = int.from_bytes(pdu[1:3], "big"), int.from_bytes(pdu[3:5], "big")
        rules = control()
        if rules.get("exception"):
            return bytes([fc | 0x80, rules["exception"]]), f"x{rules['exception']}"
        refused = set(rules.get("refuse", ()))
        if address + count > len(registers) or refused.intersection(range(address, address + count)):
            return bytes([fc | 0x80, 2]), "x2"
        words = registers[address:address + count]
        return bytes([fc, 2 * count]) + b"".join(w.to_bytes(2, "big") for w in words), "ok"

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(7)
                body = await reader.readexactly(int.from_bytes(head[4:6], "big") - 1)
                pdu, result = respond(body)
                if log_path:
                    with open(log_path, "a", encoding="utf-8") as f:
                        f.write(f"{body[0]} {int.from_bytes(body[1:3], 'big')} {int.from_bytes(body[3:5], 'big')} "
                                f"{result}\n")
                writer.write(head[:4] + (len(pdu) + 1).to_bytes(2, "big") + head[6:7] + pdu)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(answer, host, port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


async def main(config: dict) -> None:
    if config.get("scripted"):
        await _scripted(*config["tcp"], config["scripted"])
        return
    if config.get("silent"):
        await _silent(*config["tcp"])
        return
    if config.get("short"):
        await _short(*config["tcp"])
        return
    devices = [SimDevice(id=d["id"], simdata=_simdata(d), action=_action(d)) for d in config["devices"]]
    framer = FramerType(config.get("framer", "socket"))
    if "serial" in config:
        server = ModbusSerialServer(
            devices,
            framer=framer,
            port=config["serial"],
            baudrate=config.get("baudrate", 9600),
            ignore_missing_devices=True,
        )
    else:
        host, port = config["tcp"]
        server = ModbusTcpServer(devices, framer=framer, address=(host, port), ignore_missing_devices=True)
    await server.serve_forever(background=True)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))

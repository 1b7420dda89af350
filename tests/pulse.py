"""A private PulseAudio server with a null sink, so that
tests can play speech into a real input device.

PortAudio reaches it through the ALSA `pulse` device (libasound2-plugins); `PULSE_SERVER` in the
returned environment points clients (paplay, the ALSA plugin) at this server only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SINK = "livecap_test"


@dataclass
class PulseServer:
    process: subprocess.Popen
    env: dict[str, str]  # os.environ plus what points clients at this server

    def play(self, path: Path) -> subprocess.Popen:
        """Play a sound file into the null sink (heard by its monitor, the default source)."""
        return subprocess.Popen(
            ["paplay", "--device", SINK, str(path)], env=self.env, stderr=subprocess.PIPE
        )

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@contextmanager
def pulse_server(folder: Path) -> Iterator[PulseServer]:
    """Start PulseAudio (as root too) on a socket in
    `folder`; raises RuntimeError when it cannot start."""
    missing = [tool for tool in ("pulseaudio", "pactl", "paplay") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(f"not installed: {', '.join(missing)}")
    runtime = folder / "runtime"
    runtime.mkdir(parents=True, exist_ok=True)
    socket = runtime / "native"
    env = {
        **os.environ,
        "XDG_RUNTIME_DIR": str(runtime),
        "HOME": str(folder),
        "PULSE_SERVER": f"unix:{socket}",
    }
    env.pop("PULSE_SINK", None)
    env.pop("PULSE_SOURCE", None)
    log = (folder / "pulseaudio.log").open("w")
    process = subprocess.Popen(
        [
            "pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "-n", "--disallow-exit",
            f"--load=module-native-protocol-unix socket={socket} auth-anonymous=1",
            f"--load=module-null-sink sink_name={SINK} rate=48000",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    server = PulseServer(process, env)
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"pulseaudio exited: {(folder / 'pulseaudio.log').read_text()[-500:]}"
                )
            ready = subprocess.run(
                ["pactl", "info"], env=env, capture_output=True, stdin=subprocess.DEVNULL
            )
            if ready.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("pulseaudio did not answer within 10 s")
            time.sleep(0.2)
        subprocess.run(
            ["pactl", "set-default-source", f"{SINK}.monitor"],
            env=env,
            check=True,
            capture_output=True,
        )
        yield server
    finally:
        server.kill()
        log.close()

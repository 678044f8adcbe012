"""A mixed journey through the gateway: one wrk script that picks each request's kind at random in
the proportions of MIX and a user at random from the pool, for BENCH_SECONDS over 16 connections.
Requests/s, errors (with the statuses) and CPU-ms per request of every process group.

- list: GET /api/v1/posts; my: GET /api/v1/posts/my;
- create: POST /api/v1/posts;
- download: GET /api/v1/images/<name> of one of the images uploaded beforehand, by its owner;
- upload: POST /api/v1/images/upload of a small real JPEG (a multipart body built here);
- login: POST /api/v1/auth/login with the user's password (the gateway's login limit per client
  address is raised for the bench stack: all of wrk's connections come from one address).

Registration happens before the run: the users come from the shared pool (bench/context.py),
whose tokens are passed in the script, as a client keeps the token it logged in with.
"""

from __future__ import annotations

import io
import os
import secrets
import tempfile
from pathlib import Path

import requests
from PIL import Image

from bench.context import PASSWORD, SETUP_TIMEOUT_SECONDS, Bench
from bench.measure import lua_string

# Percent of requests of each kind: mostly reading, some writing, logging in rarely.
MIX = {"list": 60, "my": 15, "create": 10, "download": 10, "upload": 4, "login": 1}
CONNECTIONS = 16
IMAGE_OWNERS = 20
SMALL_JPEG_SIDE = 256


def small_jpeg() -> bytes:
    """A real JPEG of a few tens of KB (noise, so it does not compress to nothing)."""
    buffer = io.BytesIO()
    side = SMALL_JPEG_SIDE
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def multipart(field: str, filename: str, content_type: str, data: bytes) -> tuple[str, bytes]:
    """(Content-Type header, body) of a multipart/form-data upload of one file."""
    boundary = f"bench-{secrets.token_hex(12)}"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return f"multipart/form-data; boundary={boundary}", body


def run(bench: Bench) -> list[str]:
    api = bench.url("api")
    users = bench.users()
    jpeg = small_jpeg()
    images = []
    for owner in users[:IMAGE_OWNERS]:
        answer = requests.post(
            f"{api}/api/v1/images/upload",
            headers={"Authorization": owner.authorization},
            files={"file": ("small.jpg", jpeg, "image/jpeg")},
            timeout=SETUP_TIMEOUT_SECONDS,
        )
        answer.raise_for_status()
        images.append((owner, f"/api/v1/images/{answer.json()['filename']}"))

    upload_type, upload_body = multipart("file", "small.jpg", "image/jpeg", jpeg)
    with tempfile.TemporaryDirectory(prefix="platform-bench-mixed-") as folder:
        body_path = Path(folder) / "upload.body"
        body_path.write_bytes(upload_body)
        script = _script(users, images, upload_type, body_path)
        result = bench.load(f"{api}/api/v1/posts", connections=CONNECTIONS, script=script)

    groups = tuple(group.name for group in bench.groups())
    bench.record("mixed", {**result.as_dict(), "mix_percent": MIX, "sent_by_kind": result.counts})
    mix = ", ".join(f"{kind} {share} %" for kind, share in MIX.items())
    return [
        f"mix: {mix}; {len(users)} users, {len(images)} images to download, "
        f"a {len(jpeg) / 1024:.0f} KB JPEG to upload",
        result.summary(groups),
        f"  sent: {result.counts}; statuses: {result.statuses}",
    ]


def _script(users, images, upload_type: str, body_path: Path) -> str:
    user_rows = ",\n".join(
        f"  {{authorization = {lua_string(user.authorization)}, username = {lua_string(user.username)}}}"
        for user in users
    )
    image_rows = ",\n".join(
        f"  {{authorization = {lua_string(owner.authorization)}, path = {lua_string(path)}}}"
        for owner, path in images
    )
    mix_rows = ", ".join(f"{{{lua_string(kind)}, {share}}}" for kind, share in MIX.items())
    return f"""
local users = {{
{user_rows}
}}
local images = {{
{image_rows}
}}
local mix = {{{mix_rows}}}
local password = {lua_string(PASSWORD)}
local upload_type = {lua_string(upload_type)}
local body_file = io.open({lua_string(str(body_path))}, "rb")
local upload_body = body_file:read("*a")
body_file:close()

local function pick_kind()
  local total = 0
  for _, entry in ipairs(mix) do total = total + entry[2] end
  local roll = math.random(total)
  for _, entry in ipairs(mix) do
    if roll <= entry[2] then return entry[1] end
    roll = roll - entry[2]
  end
end

request = function()
  local kind = pick_kind()
  counts[kind] = (counts[kind] or 0) + 1
  local user = users[math.random(#users)]
  local bearer = {{Authorization = user.authorization}}
  if kind == "list" then
    return wrk.format("GET", "/api/v1/posts")
  elseif kind == "my" then
    return wrk.format("GET", "/api/v1/posts/my", bearer)
  elseif kind == "create" then
    return wrk.format("POST", "/api/v1/posts",
      {{Authorization = user.authorization, ["Content-Type"] = "application/json"}},
      '{{"content": "a post of the mixed journey"}}')
  elseif kind == "download" then
    local image = images[math.random(#images)]
    return wrk.format("GET", image.path, {{Authorization = image.authorization}})
  elseif kind == "upload" then
    return wrk.format("POST", "/api/v1/images/upload",
      {{Authorization = user.authorization, ["Content-Type"] = upload_type}}, upload_body)
  else
    return wrk.format("POST", "/api/v1/auth/login", {{["Content-Type"] = "application/json"}},
      '{{"username": "' .. user.username .. '", "password": "' .. password .. '"}}')
  end
end
"""

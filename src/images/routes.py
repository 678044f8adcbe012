"""POST /upload, GET /images, GET /images/<filename>, DELETE /images/<filename>, GET /stats.

Every route acts for the token's owner only: rows are always selected by the owner's id, so
another user's image is simply not found (404), whether it exists or not.

Order of operations (docs/images-consistency.md has the longer version):

- Upload: insert a 'pending' row and commit, put the object, then mark the row 'committed'.
  Only committed rows are listed, served or counted, so a half-done upload is invisible.
  If the final commit fails, the pending row is removed first and its object second, so an
  object is never removed while a committed row may point to it; if the put fails, only the
  row is removed. Whatever a failure or crash leaves behind (a pending row, an object
  without a row) is removed by `python -m images.reconcile --fix` after a grace period.
- Delete: delete the row inside a transaction (which locks it), delete the object, then
  commit. If the object store fails, the transaction rolls back and nothing changed, so the
  client can retry. A second concurrent delete waits on the row lock and then finds nothing
  (404). Should the commit fail after the object went, the row (whose object is gone) is
  removed by a retried delete or by the reconcile, and a download of it answers 404.
"""

from __future__ import annotations

import logging
import os
import re
import uuid

from flask import Blueprint, Response, current_app, jsonify, request
from prometheus_client import Counter
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge

from images import inspection
from images.budget import DecodeBusy
from images.config import ImagesSettings
from images.models import COMMITTED, PENDING, Image, Owner, db
from images.storage import ObjectMissing, ObjectStore, ObjectStoreUnavailable
from servicekit.app import settings_of
from servicekit.database import reads_only
from servicekit.errors import ApiError, problem_response
from servicekit.tokens import current_user, token_required
from servicekit.validation import invalid, query_int

bp = Blueprint("images", __name__)
log = logging.getLogger(__name__)

# Always fullmatch: ``$`` would also match before a trailing newline.
FILENAME = re.compile(r"[0-9a-f]{32}\.(?:" + "|".join(inspection.EXTENSIONS) + r")")
ORIGINAL_FILENAME_CHARACTERS = 255
# The api documents these as the image list's paging (api/contract.py; a unit test holds them equal).
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_OFFSET = 1_000_000

UPLOADS = Counter("images_uploads_total", "Images stored.")
UPLOAD_BYTES = Counter("images_upload_bytes_total", "Bytes of images stored.")
REJECTIONS = Counter("images_upload_rejections_total", "Uploads refused, by reason.", ["reason"])
DELETES = Counter("images_deletes_total", "Images deleted.")
REJECTION_TYPES = {
    "too_large": "upload-too-large",
    "unsupported_type": "unsupported-media-type",
    "too_many_pixels": "too-many-pixels",
    "invalid_image": "invalid-image",
    "empty": "empty-upload",
}
for _reason in REJECTION_TYPES:
    REJECTIONS.labels(_reason)


def object_key(user_id: int, filename: str) -> str:
    """Where an image's bytes live; made only of the owner's id and the server's name."""
    return f"users/{user_id}/{filename}"


@bp.post("/upload")
@token_required
def upload():
    owner: Owner = current_user
    settings = _settings()
    received, size = _receive_file(settings.max_upload_bytes)
    try:
        inspected = inspection.inspect(
            received.stream, settings.max_image_pixels, current_app.extensions["images.decode_budget"]
        )
    except inspection.Rejected as rejected:
        raise _rejection(rejected.reason, rejected.status, rejected.detail) from None
    except DecodeBusy:
        log.warning("decode memory budget in use; upload refused", extra={"user_id": owner.id})
        raise ApiError(
            503,
            "The service is busy checking other images; try again shortly.",
            type_="decode-busy",
            headers={"Retry-After": "2"},
        ) from None

    filename = f"{uuid.uuid4().hex}.{inspected.format.extension}"
    image = Image(
        user_id=owner.id,
        username=owner.username,
        filename=filename,
        object_key=object_key(owner.id, filename),
        original_filename=_original_name(received.filename),
        content_type=inspected.format.content_type,
        size=size,
        width=inspected.width,
        height=inspected.height,
        sha256=inspected.sha256,
        status=PENDING,
    )
    db.session.add(image)
    db.session.commit()
    image_id, key, described = image.id, image.object_key, image.to_json()

    try:
        _store().put(key, received.stream, size, inspected.format.content_type)
    except ObjectStoreUnavailable:
        # Asking the store that just failed to delete would only double the client's wait;
        # an object that did land has no row now, and the reconcile removes it.
        _undo_upload(image_id, key, remove_object=False)
        raise
    try:
        marked = db.session.execute(
            update(Image).where(Image.id == image_id, Image.status == PENDING).values(status=COMMITTED)
        )
        db.session.commit()
    except SQLAlchemyError:
        db.session.rollback()
        _undo_upload(image_id, key, remove_object=True)
        raise
    if marked.rowcount != 1:
        # The pending row was removed meanwhile (a reconcile run with too short a grace period).
        _undo_upload(image_id, key, remove_object=True)
        raise ApiError(503, "The upload could not be completed; try again.", type_="upload-interrupted")

    UPLOADS.inc()
    UPLOAD_BYTES.inc(size)
    log.info("image stored", extra={"user_id": owner.id, "image": filename, "size": size})
    return jsonify(described), 201, {"Location": f"/images/{filename}"}


@bp.get("/images")
@reads_only
@token_required
def list_images():
    """A page of the owner's images, newest first, in the shape of the api's post lists."""
    _only_query_parameters("limit", "offset")
    limit = query_int("limit", DEFAULT_PAGE_SIZE, minimum=1, maximum=MAX_PAGE_SIZE)
    offset = query_int("offset", 0, minimum=0, maximum=MAX_OFFSET)
    # One row more than asked tells whether another page exists without counting.
    images = (
        db.session.execute(
            select(Image)
            .where(Image.user_id == current_user.id, Image.status == COMMITTED)
            .order_by(Image.created_at.desc(), Image.id.desc())
            .limit(limit + 1)
            .offset(offset)
        )
        .scalars()
        .all()
    )
    return jsonify(
        items=[image.to_json() for image in images[:limit]],
        limit=limit,
        offset=offset,
        next_offset=offset + limit if len(images) > limit else None,
    )


@bp.get("/images/<filename>")
@reads_only
@token_required
def download(filename: str):
    image = _own_image(filename)
    if request.if_none_match.contains_weak(image.sha256):
        return _image_headers(Response(status=304), image)
    try:
        if request.method == "HEAD":
            # The same headers as GET, from the object's metadata: its bytes are not fetched.
            response = Response(mimetype=image.content_type)
            response.headers["Content-Length"] = str(_store().size(image.object_key))
            return _image_headers(response, image)
        stored = _store().open(image.object_key)
    except ObjectMissing:
        log.warning("committed image has no object", extra={"object_key": image.object_key})
        raise _not_found() from None
    # The app context (and its database connection) is released before these chunks are sent.
    response = Response(stored.chunks, mimetype=image.content_type, direct_passthrough=True)
    response.headers["Content-Length"] = str(stored.content_length)
    return _image_headers(response, image)


@bp.delete("/images/<filename>")
@token_required
def delete_image(filename: str):
    if not FILENAME.fullmatch(filename):
        raise _not_found()
    key = db.session.execute(
        delete(Image)
        .where(Image.user_id == current_user.id, Image.filename == filename, Image.status == COMMITTED)
        .returning(Image.object_key)
    ).scalar_one_or_none()
    if key is None:
        db.session.rollback()
        raise _not_found()
    try:
        _store().delete(key)
    except ObjectStoreUnavailable:
        db.session.rollback()
        raise
    db.session.commit()
    DELETES.inc()
    log.info("image deleted", extra={"user_id": current_user.id, "image": filename})
    return "", 204


@bp.get("/stats")
@reads_only
@token_required
def stats():
    rows = db.session.execute(
        select(Image.content_type, func.count(), func.coalesce(func.sum(Image.size), 0))
        .where(Image.user_id == current_user.id, Image.status == COMMITTED)
        .group_by(Image.content_type)
    ).all()
    by_content_type = dict.fromkeys(inspection.CONTENT_TYPES, 0)
    for content_type, count, _ in rows:
        by_content_type[content_type] = count
    return jsonify(
        count=sum(row[1] for row in rows),
        total_bytes=int(sum(row[2] for row in rows)),
        by_content_type=by_content_type,
    )


# -- helpers -------------------------------------------------------------------------------
def _settings() -> ImagesSettings:
    return settings_of(current_app)


def _store() -> ObjectStore:
    return current_app.extensions["images.store"]


def _receive_file(max_upload_bytes: int) -> tuple[FileStorage, int]:
    """The multipart field `file`, spooled to /tmp, and its size; or a 4xx.

    Too large a body was refused from its declared length before any of it was read (the
    app's MAX_CONTENT_LENGTH, checked by servicekit before the request reaches this view), and
    an undeclared one is cut off where it passes the limit; both end in refused_too_large.
    """
    received = request.files.get("file")
    if received is None:
        raise invalid("file", "is required: send the image as the multipart/form-data file field 'file'")
    size = received.stream.seek(0, os.SEEK_END)
    if size == 0:
        raise _rejection("empty", 400, "The file is empty.")
    if size > max_upload_bytes:
        raise RequestEntityTooLarge()
    return received, size


def _only_query_parameters(*allowed: str) -> None:
    """A 400 for a query parameter the route does not take, or one given twice (as the api)."""
    errors = [
        {"field": name, "message": "is not a known query parameter"}
        for name in sorted(set(request.args) - set(allowed))
    ] + [
        {"field": name, "message": "must be given at most once"}
        for name in allowed
        if len(request.args.getlist(name)) > 1
    ]
    if errors:
        detail = "; ".join(f"{error['field']}: {error['message']}" for error in errors)
        raise ApiError(400, detail, type_="validation-error", errors=errors)


def refused_too_large(_error: RequestEntityTooLarge):
    """Every 413 of this service, wherever it was raised (header check, parser, spool)."""
    if request.endpoint == "images.upload":
        REJECTIONS.labels("too_large").inc()
    limit = _settings().max_upload_bytes
    detail = f"The image is larger than the {limit} bytes accepted."
    return problem_response(413, detail, type_=REJECTION_TYPES["too_large"])


def _rejection(reason: str, status: int, detail: str) -> ApiError:
    REJECTIONS.labels(reason).inc()
    return ApiError(status, detail, type_=REJECTION_TYPES[reason])


def _original_name(raw: str | None) -> str:
    """The client's file name as metadata only: its last path segment, printable, bounded."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(ch for ch in name if ch.isprintable())[:ORIGINAL_FILENAME_CHARACTERS]


def _undo_upload(image_id: int, key: str, *, remove_object: bool) -> None:
    """Remove a failed upload: its pending row first, then its object (see the module doc).

    The object goes only when no committed row names it: if the final commit did reach the
    database though its answer was lost, the image exists and keeps its bytes. Both steps are
    best effort; what they cannot remove, the reconcile removes later.
    """
    try:
        db.session.execute(delete(Image).where(Image.id == image_id, Image.status == PENDING))
        committed = db.session.execute(select(Image.id).where(Image.id == image_id)).first() is not None
        db.session.commit()
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.warning(
            "could not remove pending row; the reconcile will",
            extra={"object_key": key, "error": type(exc).__name__},
        )
        return
    if remove_object and not committed:
        _store().delete_quietly(key)


def _own_image(filename: str) -> Image:
    if not FILENAME.fullmatch(filename):
        raise _not_found()
    image = db.session.execute(
        select(Image).where(
            Image.user_id == current_user.id, Image.filename == filename, Image.status == COMMITTED
        )
    ).scalar_one_or_none()
    if image is None:
        raise _not_found()
    return image


def _image_headers(response: Response, image: Image) -> Response:
    response.set_etag(image.sha256)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Disposition"] = f'inline; filename="{image.filename}"'
    # Private: the bytes belong to one user. Revalidated with the ETag, which names the content.
    response.headers["Cache-Control"] = "private, no-cache"
    return response


def _not_found() -> ApiError:
    return ApiError(404, "No such image.", type_="image-not-found")

"""Pictures of boards with Pillow (``pip install 'generals-rl[train]'``): owners, armies,
cities, generals, mountains and fog, one frame per tick, as an animated GIF and PNGs.

Layout: a header strip of ``HEADER`` pixels, then tile ``(x, y)`` filled from
``tile_origin(x, y)`` over ``tile - 1`` pixels (a one-pixel grid line between tiles).
Generals carry a ``MARK`` pixel border in ``GENERAL_MARK``; cities one in ``CITY_MARK``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TILE_PLAIN, TILE_MOUNTAIN, TILE_CITY, TILE_GENERAL = 0, 1, 2, 3
HEADER = 16
MARK = 3
BACKGROUND = (30, 30, 30)
NEUTRAL = (220, 220, 220)
NEUTRAL_CITY = (128, 128, 128)
MOUNTAIN = (90, 70, 50)
FOG = (60, 60, 70)
FOG_OBSTACLE = (45, 45, 50)
GENERAL_MARK = (255, 215, 0)
CITY_MARK = (255, 255, 255)
PLAYER_COLORS = (
    (220, 40, 40),
    (40, 90, 220),
    (40, 150, 60),
    (140, 60, 170),
    (230, 130, 20),
    (0, 150, 150),
    (150, 90, 40),
    (230, 90, 160),
    (110, 120, 20),
    (20, 20, 120),
    (120, 20, 20),
    (20, 90, 20),
    (90, 90, 160),
    (200, 160, 120),
    (60, 140, 200),
    (160, 200, 60),
)


def _pil():
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        raise ImportError("rendering needs Pillow: pip install 'generals-rl[train]'") from None
    return Image, ImageDraw, ImageFont


def tile_origin(x: int, y: int, tile: int = 24) -> tuple[int, int]:
    """The top-left pixel of tile ``(x, y)``."""
    return x * tile, HEADER + y * tile


def tile_color(kind: int, owner: int, visible: bool = True) -> tuple[int, int, int]:
    if not visible:
        return FOG_OBSTACLE if kind in (TILE_MOUNTAIN, TILE_CITY) else FOG
    if kind == TILE_MOUNTAIN:
        return MOUNTAIN
    if owner >= 0:
        return PLAYER_COLORS[owner % len(PLAYER_COLORS)]
    return NEUTRAL_CITY if kind == TILE_CITY else NEUTRAL


def draw_board(
    kind, owner, army, visible=None, tick: int | None = None, tile: int = 24, title: str = ""
):
    """One board as a PIL image. ``visible`` (bool ``(H, W)``) hides the other tiles in
    fog as a player sees them; ``None`` shows everything."""
    Image, ImageDraw, ImageFont = _pil()
    kind, owner, army = (np.asarray(a) for a in (kind, owner, army))
    h, w = kind.shape
    image = Image.new("RGB", (w * tile, HEADER + h * tile), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    header = " ".join(part for part in (title, "" if tick is None else f"tick {tick}") if part)
    if header:
        draw.text((2, 2), header, fill=(255, 255, 255), font=font)
    for y in range(h):
        for x in range(w):
            seen = True if visible is None else bool(visible[y, x])
            k, o, a = int(kind[y, x]), int(owner[y, x]), int(army[y, x])
            x0, y0 = tile_origin(x, y, tile)
            x1, y1 = x0 + tile - 2, y0 + tile - 2
            draw.rectangle((x0, y0, x1, y1), fill=tile_color(k, o, seen))
            if not seen:
                continue
            if k == TILE_MOUNTAIN:
                draw.polygon(
                    ((x0 + tile // 2, y0 + 4), (x0 + 4, y1 - 4), (x1 - 4, y1 - 4)),
                    fill=(150, 130, 110),
                )
                continue
            if k in (TILE_GENERAL, TILE_CITY):
                mark = GENERAL_MARK if k == TILE_GENERAL else CITY_MARK
                for i in range(MARK):
                    draw.rectangle((x0 + i, y0 + i, x1 - i, y1 - i), outline=mark)
            if a:
                text = str(a) if a < 10000 else f"{a // 1000}k"
                left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
                tx = x0 + (tile - 1 - (right - left)) // 2 - left
                ty = y0 + (tile - 1 - (bottom - top)) // 2 - top
                ink = (0, 0, 0) if o < 0 else (255, 255, 255)
                draw.text((tx, ty), text, fill=ink, font=font)
    return image


def visibility(owner, player: int) -> np.ndarray:
    """Fog of war: the tiles within the 3x3 square around any tile ``player`` owns."""
    owned = np.asarray(owner) == player
    padded = np.pad(owned, 1)
    seen = np.zeros_like(owned)
    h, w = owned.shape
    for dy in range(3):
        for dx in range(3):
            seen |= padded[dy : dy + h, dx : dx + w]
    return seen


def draw_frames(states, player: int | None = None, tile: int = 24, title: str = ""):
    """Images of board states (dicts with kind, owner, army and tick, as
    ``VecEnv.game_state`` returns); with ``player``, in that player's fog."""
    images = []
    for state in states:
        seen = None if player is None else visibility(state["owner"], player)
        images.append(
            draw_board(
                state["kind"], state["owner"], state["army"], seen, state.get("tick"), tile, title
            )
        )
    return images


def save_animation(
    images, out: str | Path, frames_dir: str | Path | None = None, frame_ms: int = 150
) -> Path:
    """An animated GIF of ``images`` (and, with ``frames_dir``, one PNG per frame)."""
    if not images:
        raise ValueError("no frames to save")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(out, save_all=True, append_images=list(images[1:]), duration=frame_ms, loop=0)
    if frames_dir is not None:
        frames_dir = Path(frames_dir)
        frames_dir.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            image.save(frames_dir / f"frame_{i:05d}.png")
    return out


def replay_states(replay, every: int = 1) -> list[dict]:
    """Board states of a recorded replay every ``every`` ticks and at the end. A captured
    general is drawn as the city it becomes."""
    game = replay.initial_game()
    h, w = game.height, game.width
    kind0 = np.array(game.kind, dtype=np.uint8)
    generals = list(replay.generals)
    states = [
        {
            "kind": kind0.copy(),
            "owner": np.array(game.owner),
            "army": np.array(game.army),
            "tick": 0,
        }
    ]
    run = game.play_recorded(replay.moves, replay.afks, every)
    for tick, owner, army in run["snapshots"]:
        if tick <= states[-1]["tick"]:
            continue
        owner = np.asarray(owner).reshape(h, w)
        kind = kind0.copy()
        for player, t in enumerate(generals):
            y, x = divmod(t, w)
            if owner[y, x] != player:
                kind[y, x] = TILE_CITY
        states.append(
            {
                "kind": kind,
                "owner": owner,
                "army": np.asarray(army).reshape(h, w),
                "tick": int(tick),
            }
        )
    return states

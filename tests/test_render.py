"""The renderer draws known boards to known pixels; replays and GIFs."""

from __future__ import annotations

import json

import numpy as np
import pytest

PIL = pytest.importorskip("PIL")

from generals_rl import render
from generals_rl.replay import load

# 2 x 3: player 0's general (army 5), a neutral city (40), a mountain;
# player 1's plain tile (3), a neutral plain, player 1's general (2).
KIND = np.array([[3, 2, 1], [0, 0, 3]], dtype=np.uint8)
OWNER = np.array([[0, -1, -1], [1, -1, 1]], dtype=np.int16)
ARMY = np.array([[5, 40, 0], [3, 0, 2]], dtype=np.int32)
TILE = 24


def pixel(image, x, y, dx, dy):
    ox, oy = render.tile_origin(x, y, TILE)
    return image.getpixel((ox + dx, oy + dy))


def test_known_board_draws_known_pixels():
    image = render.draw_board(KIND, OWNER, ARMY, tick=7, tile=TILE)
    assert image.size == (3 * TILE, render.HEADER + 2 * TILE)
    # the one-pixel grid line after each tile
    assert pixel(image, 0, 0, TILE - 1, 5) == render.BACKGROUND
    # generals: a gold border, the owner's color inside
    assert pixel(image, 0, 0, 0, 0) == render.GENERAL_MARK
    assert pixel(image, 0, 0, render.MARK - 1, 10) == render.GENERAL_MARK
    assert pixel(image, 0, 0, render.MARK + 1, render.MARK + 1) == render.PLAYER_COLORS[0]
    assert pixel(image, 2, 1, render.MARK + 1, render.MARK + 1) == render.PLAYER_COLORS[1]
    # a neutral city: a white border around gray
    assert pixel(image, 1, 0, 1, 1) == render.CITY_MARK
    assert pixel(image, 1, 0, render.MARK + 1, render.MARK + 1) == render.NEUTRAL_CITY
    # a mountain, an owned plain, a neutral plain
    assert pixel(image, 2, 0, 1, 1) == render.MOUNTAIN
    assert pixel(image, 0, 1, 1, 1) == render.PLAYER_COLORS[1]
    assert pixel(image, 1, 1, 1, 1) == render.NEUTRAL
    assert pixel(image, 1, 1, TILE // 2, TILE // 2) == render.NEUTRAL  # no army, no text
    # army numbers: ink in the middle of tiles holding armies
    for x, y, ink in ((0, 0, (255, 255, 255)), (1, 0, (0, 0, 0)), (0, 1, (255, 255, 255))):
        ox, oy = render.tile_origin(x, y, TILE)
        box = [
            image.getpixel((ox + i, oy + j)) for i in range(4, TILE - 4) for j in range(4, TILE - 4)
        ]
        # anti-aliased glyphs: some pixel close to the ink
        assert min(sum(abs(a - b) for a, b in zip(p, ink, strict=False)) for p in box) < 90


def test_fog_hides_what_a_player_cannot_see():
    seen = render.visibility(OWNER, 0)
    assert seen.tolist() == [[True, True, False], [True, True, False]]
    image = render.draw_board(KIND, OWNER, ARMY, visible=seen, tile=TILE)
    assert pixel(image, 2, 0, 1, 1) == render.FOG_OBSTACLE  # the mountain, in fog
    assert pixel(image, 2, 1, 1, 1) == render.FOG  # player 1's general, in fog
    assert pixel(image, 2, 1, TILE // 2, TILE // 2) == render.FOG  # its army is hidden
    assert pixel(image, 0, 1, 1, 1) == render.PLAYER_COLORS[1]  # next to player 0: seen


def test_animation_writes_a_gif_and_frames(tmp_path):
    states = [{"kind": KIND, "owner": OWNER, "army": ARMY + t, "tick": t} for t in range(3)]
    images = render.draw_frames(states, player=1)
    out = render.save_animation(images, tmp_path / "g.gif", frames_dir=tmp_path / "frames")
    from PIL import Image

    with Image.open(out) as gif:
        assert gif.n_frames == 3
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [
        f"frame_0000{i}.png" for i in range(3)
    ]
    with pytest.raises(ValueError):
        render.save_animation([], tmp_path / "none.gif")


def tiny_replay(tmp_path):
    fields = {
        "version": 7,
        "id": "tiny",
        "mapWidth": 4,
        "mapHeight": 3,
        "usernames": ["a", "b"],
        "stars": [0, 0],
        "cities": [5],
        "cityArmies": [40],
        "generals": [0, 11],
        "mountains": [6],
        "moves": [
            {"index": 0, "start": 0, "end": 1, "is50": 0, "turn": 2},
            {"index": 1, "start": 11, "end": 10, "is50": 1, "turn": 4},
        ],
        "afks": [],
        "teams": None,
    }
    path = tmp_path / "tiny.gioreplay"
    path.write_text(json.dumps(fields))
    return path


def test_replay_states_follow_the_moves(tmp_path):
    states = render.replay_states(load(tiny_replay(tmp_path)), every=1)
    ticks = [s["tick"] for s in states]
    assert ticks[0] == 0 and ticks == sorted(ticks)
    first = states[0]
    assert (
        first["kind"][0, 0] == render.TILE_GENERAL and first["kind"][1, 2] == render.TILE_MOUNTAIN
    )
    assert first["owner"][0, 0] == 0 and first["owner"][2, 3] == 1
    later = next(s for s in states if s["tick"] >= 3)
    assert later["owner"][0, 1] == 0  # player 0 moved right on tick 2


def test_cli_renders_a_replay(tmp_path, capsys):
    from generals_rl.cli import main

    out = tmp_path / "game.gif"
    assert (
        main(
            [
                "render",
                str(tiny_replay(tmp_path)),
                "--out",
                str(out),
                "--frames",
                str(tmp_path / "f"),
            ]
        )
        == 0
    )
    assert out.exists() and any((tmp_path / "f").iterdir())
    assert main(["render", str(tmp_path / "missing.gior"), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("generals-rl render:")

"""Team games, rule by rule on hand-built boards (players 0 and 1 against 2 and 3
unless said otherwise), then team self-play and team replays."""

import json

import generals_rl
import numpy as np
import pytest
from conftest import CITY, GENERAL, NEUTRAL, RIGHT, UP, board_totals, move, parse_board, step, tile
from generals_rl import RewardConfig, VecEnv, replay
from generals_rl.bots import HeuristicBot

TWO_V_TWO = [0, 0, 1, 1]

BOARD = """
    G0:5  .0:6  .1:3  G1:4  .    .
    .     .     .     .     .    .
    .     .     .     .     .    .
    .     .     .     .     .    .
    G2    .2:9  .     .     .    G3
"""


def team_game(board: str = BOARD, teams=TWO_V_TWO) -> generals_rl.Game:
    kind, owner, army, generals = parse_board(board)
    return generals_rl.Game.from_map(kind, owner, army, generals, teams=teams)


def test_move_onto_an_ally_adds_the_armies_and_takes_the_tile():
    game = team_game()
    step(game, {0: move(game, 0, 1, RIGHT)})
    assert tile(game, 0, 1) == (0, 1)
    assert tile(game, 0, 2) == (0, 3 + 5)
    armies, land = board_totals(game)
    assert game.army_per_player.tolist() == armies.tolist()
    assert game.land_per_player.tolist() == land.tolist()


def test_move_onto_an_ally_general_adds_without_taking_it():
    game = team_game()
    core = game._game
    assert core.apply_move(0, 1, 2, False)  # (0, 2) is now player 0's, holding 8
    assert core.apply_move(0, 2, 3, False)
    assert tile(game, 0, 3) == (1, 4 + 7)
    assert game.kind[0, 3] == GENERAL and game.generals[1] == 3


def test_the_reference_checks_no_army_when_moving_onto_an_ally():
    game = team_game("""
        G0 .0:1 .1:7 G1
        G2 .    .    G3
    """)
    # One army onto an ally's tile: the start keeps it, nothing moves, the tile changes hands.
    assert game._game.apply_move(0, 1, 2, False)
    assert tile(game, 0, 1) == (0, 1) and tile(game, 0, 2) == (0, 7)
    assert game.land_per_player.tolist() == [3, 1, 1, 1]


def test_live_play_still_asks_for_two_armies():
    game = team_game()
    game._game.apply_move(0, 0, 1, False)
    step(game, {0: move(game, 0, 0, RIGHT)})
    assert game.illegal_moves.tolist() == [1, 0, 0, 0]


def test_move_onto_an_enemy_fights_as_in_free_for_all():
    game = team_game()
    step(game, {2: move(game, 4, 1, UP)})
    assert tile(game, 3, 1) == (2, 8) and tile(game, 4, 1) == (2, 1)


def test_captured_general_land_goes_to_its_captor_not_a_teammate():
    game = team_game("""
        G0:5  .0:6  G1
        .2:20 .     .
        G2    .     G3
    """)
    core = game._game
    assert core.apply_move(2, 3, 0, False)  # 19 onto the general holding 5
    assert tile(game, 0, 0) == (2, 14) and game.kind[0, 0] == CITY
    assert tile(game, 0, 1) == (2, 3)  # halved, rounding half up
    assert game.alive.tolist() == [False, True, True, True]
    assert tile(game, 0, 2) == (1, 1)


def test_afk_land_goes_to_an_alive_teammate():
    game = team_game()
    core = game._game
    core.afk(0)  # dies, keeps its land
    assert tile(game, 0, 1) == (0, 6) and not game.over
    core.afk(0)  # neutralized: its land goes to player 1, armies unchanged
    assert tile(game, 0, 0) == (1, 5) and game.kind[0, 0] == CITY
    assert tile(game, 0, 1) == (1, 6)
    assert game.generals[0] == -1
    assert game.land_per_player.tolist() == [0, 4, 2, 1]


def test_afk_land_turns_neutral_without_an_alive_teammate():
    game = team_game()
    core = game._game
    core.afk(1)
    core.afk(0)
    core.afk(0)
    assert tile(game, 0, 0) == (NEUTRAL, 5) and tile(game, 0, 1) == (NEUTRAL, 6)


def test_teammates_share_vision():
    game = team_game()
    seen = game.visibility(0)
    assert seen[1, 4]  # next to player 1's general
    assert not seen[3, 1] and not seen[4, 5]  # the enemies' corner
    game._game.afk(1)  # a dead teammate no longer shows anything
    assert not game.visibility(0)[1, 4]


def test_the_game_is_over_when_the_survivors_are_one_team():
    game = team_game()
    core = game._game
    core.afk(2)
    assert not game.over and game.winner == -1
    core.afk(1)
    assert not game.over
    core.afk(3)
    assert game.over and game.winner == 0 and not game.truncated


def test_team_numbers_as_given_name_the_winner():
    game = team_game(teams=[5, 5, 9, 9])
    game._game.afk(0)
    game._game.afk(1)
    assert game.over and game.winner == 9


def test_all_dead_at_once_ends_a_team_game_as_the_reference_does():
    game = team_game()
    for p in range(4):
        game._game.afk(p)
    assert game.over and game.winner == -1


@pytest.mark.parametrize(
    "teams, message", [([0, 0, 1], "teams has 3 entries"), ([0, 0, -1, 1], "negative")]
)
def test_malformed_teams_are_refused(teams, message):
    with pytest.raises(ValueError, match=message):
        team_game(teams=teams)


# ---------------------------------------------------------------------------
# batched team play


def dilate(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1)
    h, w = mask.shape
    return np.any([padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], axis=0)


def test_observations_share_the_vision_of_alive_teammates():
    env = VecEnv(8, players=4, teams=TWO_V_TWO, height=16, width=16, seed=3)
    obs, _ = env.reset()
    visible_channel, enemy_land = 7, 3
    for i in range(env.num_envs):
        owner = env.game_state(i)["owner"]
        for p in range(4):
            team = [q for q in range(4) if TWO_V_TWO[q] == TWO_V_TWO[p]]
            expected = dilate(np.isin(owner, team))
            assert (obs[i, p, visible_channel] == expected).all()
            enemies = [q for q in range(4) if q not in team]
            assert (obs[i, p, enemy_land] == (expected & np.isin(owner, enemies))).all()


def test_two_v_two_self_play_runs_to_team_wins():
    env = VecEnv(
        16,
        players=4,
        teams=TWO_V_TWO,
        height=18,
        width=18,
        seed=5,
        max_ticks=4000,
        reward_config=RewardConfig(win=1.0, loss=-1.0),
    )
    env.reset()
    bot = HeuristicBot()
    winners = []
    for _ in range(4000):
        alive_before = env.alive.copy()
        _, rewards, terminated, _, info = env.step(bot.act(env))
        for i in np.flatnonzero(info["episode_done"]):
            winner = int(info["episode_winner"][i])
            winners.append(winner)
            for p in range(4):
                if not alive_before[i, p]:
                    continue
                if TWO_V_TWO[p] == winner:
                    assert rewards[i, p] > 0.5  # the whole winning team wins
                else:
                    assert rewards[i, p] < -0.5 and terminated[i, p]
        if len(winners) >= 16:
            break
    assert len(winners) >= 16 and set(winners) <= {0, 1}
    assert set(winners) == {0, 1}


def test_env_teams_are_checked():
    with pytest.raises(ValueError, match="teams"):
        VecEnv(1, players=4, teams=[0, 0, 1])
    with pytest.raises(ValueError, match="at least two teams"):
        VecEnv(1, players=2, teams=[3, 3])


def test_wrappers_take_teams():
    pytest.importorskip("pettingzoo")
    from generals_rl.envs import GeneralsParallelEnv

    env = GeneralsParallelEnv(players=4, teams=TWO_V_TWO, max_ticks=50)
    env.reset(seed=1)
    assert env.vec_env.teams == TWO_V_TWO


def test_gymnasium_env_plays_in_a_team():
    pytest.importorskip("gymnasium")
    from generals_rl.envs.gymnasium_env import GeneralsEnv

    env = GeneralsEnv(players=4, teams=TWO_V_TWO, agent_player=2, max_ticks=30)
    obs, _ = env.reset(seed=0)
    assert obs["observation"].shape[0] == 9
    for _ in range(30):
        obs, _, terminated, truncated, _ = env.step(
            env.action_space.sample(mask=obs["action_mask"])
        )
        if terminated or truncated:
            break
    assert truncated or terminated


# ---------------------------------------------------------------------------
# team replays


def test_a_team_replay_follows_the_team_rules(tmp_path):
    fields = {
        "version": 13,
        "id": "team",
        "mapWidth": 4,
        "mapHeight": 2,
        "usernames": ["a", "b", "c", "d"],
        "stars": [0, 0, 0, 0],
        "cities": [],
        "cityArmies": [],
        "generals": [0, 3, 4, 7],
        "mountains": [],
        # Each general takes the neutral tile beside it, then player 0 moves with 1 army
        # onto its ally's tile (taken, as the reference checks no army) and on to its
        # ally's general (not taken).
        "moves": [[1, 3, 2, 0, 2], [0, 0, 1, 0, 4], [0, 1, 2, 0, 5], [0, 2, 3, 0, 6]],
        "afks": [[2, 8], [3, 9]],
        "teams": [1, 1, 2, 2],
    }
    path = tmp_path / "team.json"
    path.write_text(json.dumps(fields))
    loaded = replay.load(path)
    assert loaded.teams == [1, 1, 2, 2]
    trace = loaded.trace()
    assert trace["over"] and trace["end_tick"] == 10 and trace["death_order"] == [2, 3]
    owner = trace["snapshots"]["10"]["owner"]
    assert owner[:4] == [0, 0, 0, 1]


def test_a_team_replay_needs_one_team_per_player(tmp_path):
    fields = {
        "version": 13,
        "id": "team",
        "mapWidth": 4,
        "mapHeight": 2,
        "usernames": [],
        "stars": [],
        "cities": [],
        "cityArmies": [],
        "generals": [0, 3],
        "mountains": [],
        "moves": [],
        "afks": [],
        "teams": [1, 1, 2],
    }
    path = tmp_path / "team.json"
    path.write_text(json.dumps(fields))
    with pytest.raises(replay.ReplayError, match="'teams': expected one team number per player"):
        replay.load(path)

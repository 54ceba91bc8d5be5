# The type stub of the C++ extension module (cpp/bindings/), generated; do not edit by
# hand. Regenerate after changing the bindings (tests/test_core_stub.py fails until then):
#   pybind11-stubgen generals_rl._core -o <dir> --numpy-array-use-type-var
"""
generals-rl C++ core: engine, batched environments, experience buffer
"""
from __future__ import annotations
import collections.abc
import numpy
import numpy.typing
import typing
import typing_extensions
__all__: list[str] = ['ARMY_CHANNELS', 'ArmyScaling', 'BYTE_ARMY_MAX', 'BufferFullError', 'CHANNEL_CODES', 'CODE_FOG', 'CODE_FOG_OBSTACLE', 'Cursor', 'DECODED_COLUMNS', 'DECODED_SAMPLE_COLUMNS', 'DecodedBatch', 'ExperienceBuffer', 'FIRST_VISIBLE_CODE', 'FLAG_LEGAL', 'FLAG_TERMINATED', 'FLAG_TRUNCATED', 'FullPolicy', 'Game', 'LZSTRING_MAX_OUTPUT', 'MAX_ARMY', 'MAX_BOARD_SIDE', 'MAX_COMPACT_ARMY', 'MAX_ENV_SIDE', 'MAX_IDLE_TICKS', 'MAX_PLAYERS', 'MAX_SEQUENCE', 'MAX_SNAPSHOT_CELLS', 'MAX_VIEW_ROWS', 'MOUNTAIN_CODES', 'MapOptions', 'NARROW_ARMY_MAX', 'NARROW_ARMY_SCALE_MAX', 'NEUTRAL', 'OBSERVATION_CHANNELS', 'OBSTACLES_CHANNEL', 'OWN_TILE_CODES', 'ObservationConfig', 'ObservationFormat', 'RECORD_COLUMNS', 'REWARD_BUCKET_BOUNDS', 'RawBatch', 'RewardConfig', 'SAMPLE_COLUMNS', 'STATE_INDEX_COLUMNS', 'STATE_INDEX_SAMPLE_COLUMNS', 'STATE_TABLES', 'TFRecordEncoder', 'TILE_CITY', 'TILE_CODES', 'TILE_GENERAL', 'TILE_KIND_SHIFT', 'TILE_MOUNTAIN', 'TILE_OWNER_MASK', 'TILE_PLAIN', 'VIEW_ARMY_SHIFT', 'VecEnv', 'VecEnvConfig', 'army_values', 'check_raw_batch', 'compact_experiences', 'compact_rows', 'compact_view_plan', 'compact_views', 'crc32c', 'crc32c_combine', 'crc32c_portable', 'decode_batch', 'encode_compact', 'encode_observation', 'expand_observations', 'generate_map', 'heuristic_policy', 'lzstring_decompress', 'next_game_id', 'random_policy', 'replay_experiences', 'run_replay', 'set_buffer', 'start_write_back', 'tfrecord_index', 'undelta_views', 'unpack_action_masks', 'vec_env_defaults', 'view_action_masks', 'view_deltas']
class FullPolicy:
    """
    What producers do when the buffer is full
    
    Members:
    
      block
    
      overwrite
    """
    __members__: typing.ClassVar[dict[str, FullPolicy]]
    block: typing.ClassVar[FullPolicy]
    overwrite: typing.ClassVar[FullPolicy]
    @typing.overload
    def __eq__(self, other: FullPolicy) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: FullPolicy) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class ArmyScaling:
    """
    How observations scale armies
    
    Members:
    
      linear
    
      log
    """
    __members__: typing.ClassVar[dict[str, ArmyScaling]]
    linear: typing.ClassVar[ArmyScaling]
    log: typing.ClassVar[ArmyScaling]
    @typing.overload
    def __eq__(self, other: ArmyScaling) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.SupportsInt | typing.SupportsIndex) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: ArmyScaling) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.SupportsInt | typing.SupportsIndex) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class ObservationFormat:
    """
    The form of a VecEnv's observations
    
    Members:
    
      float
    
      compact
    """
    __members__: typing.ClassVar[dict[str, ObservationFormat]]
    compact: typing.ClassVar[ObservationFormat]
    float: typing.ClassVar[ObservationFormat]
    @typing.overload
    def __eq__(self, other: ObservationFormat) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: ObservationFormat) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class MapOptions:
    def __init__(self) -> None:
        ...
    def validate(self) -> None:
        ...
    @property
    def cities(self) -> int:
        ...
    @cities.setter
    def cities(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def city_army_max(self) -> int:
        ...
    @city_army_max.setter
    def city_army_max(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def city_army_min(self) -> int:
        ...
    @city_army_min.setter
    def city_army_min(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def max_side(self) -> int:
        ...
    @max_side.setter
    def max_side(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def min_general_distance(self) -> int:
        ...
    @min_general_distance.setter
    def min_general_distance(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def min_side(self) -> int:
        ...
    @min_side.setter
    def min_side(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def mountain_fraction(self) -> float:
        ...
    @mountain_fraction.setter
    def mountain_fraction(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def pad_height(self) -> int:
        ...
    @pad_height.setter
    def pad_height(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def pad_width(self) -> int:
        ...
    @pad_width.setter
    def pad_width(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def players(self) -> int:
        ...
    @players.setter
    def players(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class RewardConfig:
    """
    Per-player, per-tick reward weights
    """
    def __init__(self, **kwargs) -> None:
        """
        Reward weights: the given terms, the others default
        """
    def to_dict(self) -> dict:
        ...
    @property
    def army_advantage(self) -> float:
        ...
    @army_advantage.setter
    def army_advantage(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def city_captured(self) -> float:
        ...
    @city_captured.setter
    def city_captured(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def city_lost(self) -> float:
        ...
    @city_lost.setter
    def city_lost(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def general_captured(self) -> float:
        ...
    @general_captured.setter
    def general_captured(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def land_gained(self) -> float:
        ...
    @land_gained.setter
    def land_gained(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def loss(self) -> float:
        ...
    @loss.setter
    def loss(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def win(self) -> float:
        ...
    @win.setter
    def win(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
class ObservationConfig:
    """
    How game states become observation tensors
    """
    def __init__(self, army_scaling: typing.Any = 'linear', army_scale: typing.SupportsFloat | typing.SupportsIndex = 1000.0, obstacles: bool = False) -> None:
        ...
    @property
    def army_scale(self) -> float:
        ...
    @property
    def army_scaling(self) -> ArmyScaling:
        ...
    @property
    def channels(self) -> int:
        ...
    @property
    def obstacles(self) -> bool:
        ...
class VecEnvConfig:
    """
    Settings of a VecEnv, checked when it is built
    """
    action_masks: bool
    map: MapOptions
    observation: ObservationConfig
    observations: bool
    reward: RewardConfig
    def __init__(self) -> None:
        ...
    @property
    def height(self) -> int:
        ...
    @height.setter
    def height(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def max_ticks(self) -> int:
        ...
    @max_ticks.setter
    def max_ticks(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def num_envs(self) -> int:
        ...
    @num_envs.setter
    def num_envs(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def num_threads(self) -> int:
        ...
    @num_threads.setter
    def num_threads(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def observation_format(self) -> ObservationFormat:
        ...
    @observation_format.setter
    def observation_format(self, arg1: typing.Any) -> None:
        ...
    @property
    def players(self) -> int:
        ...
    @players.setter
    def players(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def seed(self) -> int:
        ...
    @seed.setter
    def seed(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def teams(self) -> list[int]:
        ...
    @teams.setter
    def teams(self, arg0: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> None:
        ...
    @property
    def width(self) -> int:
        ...
    @width.setter
    def width(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class RawBatch:
    """
    A batch in raw form as C++ made it: the record columns, and state_index and next_state_index into the state tables (states, height, width). Its columns are numpy arrays viewing its memory.
    """
    def __len__(self) -> int:
        ...
    @property
    def action(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
        ...
    @property
    def game_id(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
        ...
    @property
    def height(self) -> int:
        ...
    @property
    def legal(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
        ...
    @property
    def missed(self) -> int:
        """
        Experiences lost to overwriting before or within this batch.
        """
    @property
    def next_sequence(self) -> int:
        """
        Where reading resumes.
        """
    @property
    def next_state_index(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
        ...
    @property
    def nstep_done(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]] | None:
        ...
    @property
    def nstep_length(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]] | None:
        ...
    @property
    def nstep_next_state_index(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]] | None:
        ...
    @property
    def nstep_reward(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]] | None:
        ...
    @property
    def player_id(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
        ...
    @property
    def reward(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
        ...
    @property
    def sequence(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
        ...
    @property
    def state_army(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
        ...
    @property
    def state_index(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
        ...
    @property
    def state_kind(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
        ...
    @property
    def state_owner(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
        ...
    @property
    def terminated(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
        ...
    @property
    def tick(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
        ...
    @property
    def truncated(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
        ...
    @property
    def weight(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]] | None:
        ...
    @property
    def width(self) -> int:
        ...
class DecodedBatch:
    """
    A batch in decoded form as C++ made it: the record columns, observation tensors and action masks. Its columns are numpy arrays viewing its memory.
    """
    def __len__(self) -> int:
        ...
    @property
    def action(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
        ...
    @property
    def action_mask(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
        ...
    @property
    def game_id(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
        ...
    @property
    def height(self) -> int:
        ...
    @property
    def legal(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
        ...
    @property
    def missed(self) -> int:
        """
        Experiences lost to overwriting before or within this batch.
        """
    @property
    def next_sequence(self) -> int:
        """
        Where reading resumes.
        """
    @property
    def next_state(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
        ...
    @property
    def nstep_done(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]] | None:
        ...
    @property
    def nstep_length(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]] | None:
        ...
    @property
    def nstep_next_state(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]] | None:
        ...
    @property
    def nstep_reward(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]] | None:
        ...
    @property
    def player_id(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
        ...
    @property
    def reward(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
        ...
    @property
    def sequence(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
        ...
    @property
    def state(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
        ...
    @property
    def terminated(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
        ...
    @property
    def tick(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
        ...
    @property
    def truncated(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
        ...
    @property
    def weight(self) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]] | None:
        ...
    @property
    def width(self) -> int:
        ...
class Game:
    @staticmethod
    def generate(options: MapOptions, seed: typing.SupportsInt | typing.SupportsIndex, max_ticks: typing.SupportsInt | typing.SupportsIndex = 0, teams: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex] = []) -> Game:
        ...
    def __init__(self, kind: typing.Any, owner: typing.Any, army: typing.Any, generals: typing.Any, max_ticks: typing.SupportsInt | typing.SupportsIndex = 0, neutral_city_regrowth: bool = False, teams: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex] = []) -> None:
        ...
    def advance(self) -> None:
        ...
    def afk(self, player: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def apply_move(self, player: typing.SupportsInt | typing.SupportsIndex, start: typing.SupportsInt | typing.SupportsIndex, end: typing.SupportsInt | typing.SupportsIndex, half: bool = False) -> bool:
        ...
    def move_is_legal(self, player: typing.SupportsInt | typing.SupportsIndex, start: typing.SupportsInt | typing.SupportsIndex, direction: typing.SupportsInt | typing.SupportsIndex) -> bool:
        ...
    def step(self, actions: typing.Any) -> bool:
        ...
    def visibility(self, player: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.bool]:
        ...
    @property
    def alive(self) -> numpy.typing.NDArray[numpy.bool]:
        ...
    @property
    def army(self) -> numpy.typing.NDArray[numpy.int32]:
        ...
    @property
    def army_per_player(self) -> numpy.typing.NDArray[numpy.int64]:
        ...
    @property
    def death_order(self) -> list[int]:
        ...
    @property
    def done(self) -> bool:
        ...
    @property
    def generals(self) -> list[int]:
        ...
    @property
    def height(self) -> int:
        ...
    @property
    def illegal_moves(self) -> numpy.typing.NDArray[numpy.int64]:
        ...
    @property
    def kind(self) -> numpy.typing.NDArray[numpy.uint8]:
        ...
    @property
    def land_per_player(self) -> numpy.typing.NDArray[numpy.int32]:
        ...
    @property
    def max_ticks(self) -> int:
        ...
    @property
    def num_players(self) -> int:
        ...
    @property
    def over(self) -> bool:
        ...
    @property
    def owner(self) -> numpy.typing.NDArray[numpy.int16]:
        ...
    @property
    def teams(self) -> typing.Any:
        ...
    @property
    def tick(self) -> int:
        ...
    @property
    def truncated(self) -> bool:
        ...
    @property
    def width(self) -> int:
        ...
    @property
    def winner(self) -> int:
        ...
class VecEnv:
    def __init__(self, config: VecEnvConfig) -> None:
        ...
    def counters(self) -> dict:
        ...
    def env_seed(self, index: typing.SupportsInt | typing.SupportsIndex, episode: typing.SupportsInt | typing.SupportsIndex) -> int:
        ...
    def game_state(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> dict:
        ...
    def outputs(self) -> dict:
        ...
    def reset(self) -> None:
        ...
    def reward(self) -> RewardConfig:
        ...
    def set_counting(self, on: bool) -> None:
        ...
    def set_reward(self, reward: RewardConfig) -> None:
        ...
    def step(self, actions: typing.Any, truncate: bool = False) -> None:
        ...
    @property
    def height(self) -> int:
        ...
    @property
    def num_envs(self) -> int:
        ...
    @property
    def num_threads(self) -> int:
        ...
    @property
    def players(self) -> int:
        ...
    @property
    def width(self) -> int:
        ...
class BufferFullError(RuntimeError):
    pass
class Cursor:
    def close(self) -> None:
        ...
    def read_decoded(self, max_items: typing.SupportsInt | typing.SupportsIndex, timeout: typing.SupportsFloat | typing.SupportsIndex) -> DecodedBatch:
        ...
    def read_raw(self, max_items: typing.SupportsInt | typing.SupportsIndex, timeout: typing.SupportsFloat | typing.SupportsIndex, with_states: bool = True, end: typing.SupportsInt | typing.SupportsIndex = 18446744073709551615) -> RawBatch:
        ...
    def read_views(self, max_items: typing.SupportsInt | typing.SupportsIndex, timeout: typing.SupportsFloat | typing.SupportsIndex, end: typing.SupportsInt | typing.SupportsIndex, obstacles: bool, army_bytes: typing.SupportsInt | typing.SupportsIndex) -> tuple:
        ...
    @property
    def closed(self) -> bool:
        ...
    @property
    def lag(self) -> int:
        ...
    @property
    def position(self) -> int:
        ...
    @property
    def total_missed(self) -> int:
        ...
class ExperienceBuffer:
    def __init__(self, height: typing.SupportsInt | typing.SupportsIndex, width: typing.SupportsInt | typing.SupportsIndex, capacity: typing.SupportsInt | typing.SupportsIndex, policy: typing.Any, state_capacity: typing.SupportsInt | typing.SupportsIndex, army_scaling: typing.Any, army_scale: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    def append_raw(self, raw: typing.Any) -> int:
        ...
    def export_resident(self) -> RawBatch:
        ...
    def import_resident(self, raw: typing.Any) -> None:
        ...
    def open_cursor(self, start: str, at: typing.Any, game_ids: typing.Any, player_ids: typing.Any, min_tick: typing.Any) -> Cursor:
        ...
    def priorities(self, sequences: typing.Any) -> numpy.typing.NDArray[numpy.float32]:
        ...
    def priority_stats(self) -> dict:
        ...
    def restore_priorities(self, sequences: typing.Any, priorities: typing.Any, max_priority: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    def sample(self, count: typing.SupportsInt | typing.SupportsIndex, seed: typing.SupportsInt | typing.SupportsIndex, prioritized: bool = False, alpha: typing.SupportsFloat | typing.SupportsIndex = 0.6, beta: typing.SupportsFloat | typing.SupportsIndex = 0.4, player_ids: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex] = [], n_step: typing.SupportsInt | typing.SupportsIndex = 0, gamma: typing.SupportsFloat | typing.SupportsIndex = 0.99) -> DecodedBatch:
        ...
    def sample_raw(self, count: typing.SupportsInt | typing.SupportsIndex, seed: typing.SupportsInt | typing.SupportsIndex, prioritized: bool = False, alpha: typing.SupportsFloat | typing.SupportsIndex = 0.6, beta: typing.SupportsFloat | typing.SupportsIndex = 0.4, player_ids: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex] = [], n_step: typing.SupportsInt | typing.SupportsIndex = 0, gamma: typing.SupportsFloat | typing.SupportsIndex = 0.99) -> RawBatch:
        ...
    def stats(self) -> dict:
        ...
    def update_priorities(self, sequences: typing.Any, priorities: typing.Any) -> int:
        ...
    @property
    def army_scale(self) -> float:
        ...
    @property
    def army_scaling(self) -> str:
        ...
    @property
    def capacity(self) -> int:
        ...
    @property
    def head(self) -> int:
        ...
    @property
    def height(self) -> int:
        ...
    @property
    def oldest(self) -> int:
        ...
    @property
    def policy(self) -> str:
        ...
    @property
    def state_capacity(self) -> int:
        ...
    @property
    def width(self) -> int:
        ...
class TFRecordEncoder:
    """
    Frames blocks of tf.train.Example records: varint features (an int64 list of one value) and row features (a fixed-size payload per record from a table row).
    """
    def __init__(self, varint_features: collections.abc.Sequence[str], row_features: collections.abc.Sequence[tuple[str, str, typing.SupportsInt | typing.SupportsIndex]], num_threads: typing.SupportsInt | typing.SupportsIndex = 1) -> None:
        """
        varint_features: names; row_features: (name, kind, size) triples, kind 'bytes', 'float', 'int64' (the table row is the payload: for 'int64' its packed varints), 'uint32 values' / 'uint64 values' (the row's little-endian values, written as an int64 list), size the table row's bytes; or kind 'state views' / 'next state views' (the acting player's compact view values, army << VIEW_ARMY_SHIFT | tile code, obstacles on, as an int64 list) / 'state masks' (the packed action mask of the state, bytes), made from encode's views, size the board's tiles. num_threads: threads a block is encoded on (0: every core); the bytes do not depend on it.
        """
    def encode(self, varint_columns: collections.abc.Sequence, row_sources: collections.abc.Sequence, views: typing.Any = None) -> tuple:
        """
        (records, lengths, crc): the framed records of one block as a uint8 array, each record's length and the block's CRC32C. varint_columns: one int64 or uint64 array per varint feature; row_sources: one (table, index) pair per row feature, record i taking row index[i] of the table (row i when index is None), None for a feature made from views; views: (state_kind, state_owner, state_army, state_index, next_state_index, player_id) of the records when a feature is made from them, else None.
        """
    @property
    def max_record_bytes(self) -> int:
        ...
def army_values(armies: typing.Any, army_scaling: typing.Any = 'linear', army_scale: typing.SupportsFloat | typing.SupportsIndex = 1000.0) -> numpy.typing.NDArray[numpy.float32]:
    ...
def check_raw_batch(batch: typing.Any, check_values: bool = True) -> None:
    """
    ValueError naming the first problem unless batch (any object with the raw form's columns as attributes) is a well-formed raw batch: columns of one length and convertible dtypes, whole boards in the state tables, state indices inside them and, with check_values, players, tile kinds, owners and armies in range.
    """
def compact_experiences(state_kind: typing.Any, state_owner: typing.Any, state_army: typing.Any, state_index: typing.Any, next_state_index: typing.Any, player_id: typing.Any, obstacles: bool = False, wide: bool = False, num_threads: typing.SupportsInt | typing.SupportsIndex = 0) -> tuple:
    ...
def compact_rows(state_kind: typing.Any, state_owner: typing.Any, state_army: typing.Any, state_index: typing.Any, player_id: typing.Any, obstacles: bool = False, wide: bool = False, masks: bool = True, num_threads: typing.SupportsInt | typing.SupportsIndex = 0) -> tuple:
    ...
def compact_view_plan(state_index: typing.Any, next_state_index: typing.Any, player_id: typing.Any, states: typing.SupportsInt | typing.SupportsIndex) -> tuple:
    ...
def compact_views(state_kind: typing.Any, state_owner: typing.Any, state_army: typing.Any, view_state: typing.Any, view_player: typing.Any, masked_views: typing.SupportsInt | typing.SupportsIndex, obstacles: bool = False, army_bytes: typing.SupportsInt | typing.SupportsIndex = 2, num_threads: typing.SupportsInt | typing.SupportsIndex = 0) -> tuple:
    ...
def crc32c(data: typing_extensions.Buffer, value: typing.SupportsInt | typing.SupportsIndex = 0) -> int:
    """
    CRC32C (Castagnoli) of a contiguous buffer, continuing from value; hardware accelerated when the CPU has SSE4.2.
    """
def crc32c_combine(first: typing.SupportsInt | typing.SupportsIndex, second: typing.SupportsInt | typing.SupportsIndex, second_size: typing.SupportsInt | typing.SupportsIndex) -> int:
    """
    The CRC32C of A followed by B, from A's CRC (first) and B's (second, of second_size bytes).
    """
def crc32c_portable(data: typing_extensions.Buffer, value: typing.SupportsInt | typing.SupportsIndex = 0) -> int:
    """
    The table-driven CRC32C used on CPUs without SSE4.2.
    """
def decode_batch(raw: typing.Any, height: typing.SupportsInt | typing.SupportsIndex, width: typing.SupportsInt | typing.SupportsIndex, army_scaling: typing.Any = 'linear', army_scale: typing.SupportsFloat | typing.SupportsIndex = 1000.0) -> DecodedBatch:
    ...
def encode_compact(kind: typing.Any, owner: typing.Any, army: typing.Any, player: typing.SupportsInt | typing.SupportsIndex, obstacles: bool = False, wide: bool = False, teams: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex] = []) -> tuple[numpy.typing.NDArray[numpy.uint8], numpy.ndarray[typing.Any, numpy.dtype[typing.Any]], numpy.typing.NDArray[numpy.uint8]]:
    ...
def encode_observation(kind: typing.Any, owner: typing.Any, army: typing.Any, player: typing.SupportsInt | typing.SupportsIndex, army_scaling: typing.Any = 'linear', army_scale: typing.SupportsFloat | typing.SupportsIndex = 1000.0, obstacles: bool = False) -> tuple[numpy.typing.NDArray[numpy.float32], numpy.typing.NDArray[numpy.bool]]:
    ...
def expand_observations(tiles: typing.Any, armies: typing.Any, army_scaling: typing.Any = 'linear', army_scale: typing.SupportsFloat | typing.SupportsIndex = 1000.0, obstacles: bool = False, num_threads: typing.SupportsInt | typing.SupportsIndex = 0, out: typing.Any = None) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
    ...
def generate_map(options: MapOptions, seed: typing.SupportsInt | typing.SupportsIndex) -> dict:
    ...
def heuristic_policy(env: VecEnv, act_for: typing.Any, out: typing.Any) -> None:
    ...
def lzstring_decompress(data: typing_extensions.Buffer, max_output: typing.SupportsInt | typing.SupportsIndex = 67108864) -> bytes:
    """
    LZString decompressFromUint8Array (the .gior form): the text as UTF-8 bytes.
    """
def next_game_id() -> int:
    ...
def random_policy(env: VecEnv, seed: typing.SupportsInt | typing.SupportsIndex, call: typing.SupportsInt | typing.SupportsIndex, act_for: typing.Any, out: typing.Any) -> None:
    ...
def replay_experiences(game: Game, moves: typing.Any, afks: typing.Any, height: typing.SupportsInt | typing.SupportsIndex, width: typing.SupportsInt | typing.SupportsIndex, game_id: typing.SupportsInt | typing.SupportsIndex, first_sequence: typing.SupportsInt | typing.SupportsIndex, reward: RewardConfig) -> RawBatch:
    """
    One experience per alive player per tick of a replay, as a raw batch.
    """
def run_replay(game: Game, moves: typing.Any, afks: typing.Any, snapshot_every: typing.SupportsInt | typing.SupportsIndex = 100) -> dict:
    ...
def set_buffer(env: VecEnv, buffer: ExperienceBuffer, timeout: typing.SupportsFloat | typing.SupportsIndex) -> None:
    ...
def start_write_back(fd: typing.SupportsInt | typing.SupportsIndex, offset: typing.SupportsInt | typing.SupportsIndex, length: typing.SupportsInt | typing.SupportsIndex) -> bool:
    """
    Starts writing a range of an open file to disk without waiting for it and without dropping it from the page cache (Linux sync_file_range); False where the platform lacks it or it failed.
    """
def tfrecord_index(lengths: typing.Any) -> bytes:
    """
    The companion index of a TFRecord file whose records have these lengths: a line "offset length" a record, as bytes.
    """
def undelta_views(view_base: typing.Any, delta_end: typing.Any, key_tiles: typing.Any, key_armies: typing.Any, change_tile: typing.Any, change_code: typing.Any, change_army: typing.Any) -> tuple:
    ...
def unpack_action_masks(action_masks: typing.Any, height: typing.SupportsInt | typing.SupportsIndex, width: typing.SupportsInt | typing.SupportsIndex, num_threads: typing.SupportsInt | typing.SupportsIndex = 0) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
    ...
def vec_env_defaults() -> dict:
    ...
def view_action_masks(tiles: typing.Any, armies: typing.Any, views: typing.Any, num_threads: typing.SupportsInt | typing.SupportsIndex = 1) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
    ...
def view_deltas(tiles: typing.Any, armies: typing.Any, state_view: typing.Any, next_state_view: typing.Any) -> tuple:
    ...
ARMY_CHANNELS: int = 2
BYTE_ARMY_MAX: int = 255
CHANNEL_CODES: list = [960, 15360, 960, 15360, 52, 209712, 34952, 262140, 3, 2]
CODE_FOG: int = 0
CODE_FOG_OBSTACLE: int = 1
DECODED_COLUMNS: tuple = (('state', '<f4', ('channels', 'height', 'width')), ('next_state', '<f4', ('channels', 'height', 'width')), ('action_mask', '|b1', ('moves')))
DECODED_SAMPLE_COLUMNS: tuple = (('nstep_next_state', '<f4', ('channels', 'height', 'width')))
FIRST_VISIBLE_CODE: int = 2
FLAG_LEGAL: int = 1
FLAG_TERMINATED: int = 2
FLAG_TRUNCATED: int = 4
LZSTRING_MAX_OUTPUT: int = 67108864
MAX_ARMY: int = 2147483647
MAX_BOARD_SIDE: int = 1024
MAX_COMPACT_ARMY: int = 65535
MAX_ENV_SIDE: int = 256
MAX_IDLE_TICKS: int = 10000
MAX_PLAYERS: int = 16
MAX_SEQUENCE: int = 4611686018427387904
MAX_SNAPSHOT_CELLS: int = 4194304
MAX_VIEW_ROWS: int = 65536
MOUNTAIN_CODES: int = 34952
NARROW_ARMY_MAX: int = 65535
NARROW_ARMY_SCALE_MAX: float = 32768.0
NEUTRAL: int = -1
OBSERVATION_CHANNELS: tuple = ('own_army', 'enemy_army', 'own_land', 'enemy_land', 'neutral_land', 'cities_and_generals', 'mountains', 'visible', 'fog')
OBSTACLES_CHANNEL: str = 'obstacles'
OWN_TILE_CODES: int = 960
RECORD_COLUMNS: tuple = (('sequence', '<u8', tuple()), ('game_id', '<u8', tuple()), ('player_id', '<i4', tuple()), ('tick', '<i4', tuple()), ('action', '<i4', tuple()), ('reward', '<f4', tuple()), ('legal', '|b1', tuple()), ('terminated', '|b1', tuple()), ('truncated', '|b1', tuple()))
REWARD_BUCKET_BOUNDS: int = 21
SAMPLE_COLUMNS: tuple = (('weight', '<f4', tuple()), ('nstep_reward', '<f4', tuple()), ('nstep_length', '<i4', tuple()), ('nstep_done', '|b1', tuple()))
STATE_INDEX_COLUMNS: tuple = (('state_index', '<i4', tuple()), ('next_state_index', '<i4', tuple()))
STATE_INDEX_SAMPLE_COLUMNS: tuple = (('nstep_next_state_index', '<i4', tuple()))
STATE_TABLES: tuple = (('state_kind', '|u1', ('height', 'width')), ('state_owner', '<i2', ('height', 'width')), ('state_army', '<i4', ('height', 'width')))
TILE_CITY: int = 2
TILE_CODES: int = 18
TILE_GENERAL: int = 3
TILE_KIND_SHIFT: int = 5
TILE_MOUNTAIN: int = 1
TILE_OWNER_MASK: int = 31
TILE_PLAIN: int = 0
VIEW_ARMY_SHIFT: int = 5

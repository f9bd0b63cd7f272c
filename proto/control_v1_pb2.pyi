from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SessionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_STATE_UNSPECIFIED: _ClassVar[SessionState]
    PENDING: _ClassVar[SessionState]
    VALIDATING: _ClassVar[SessionState]
    EXPANDING: _ClassVar[SessionState]
    DEPLOYING: _ClassVar[SessionState]
    PREPARING: _ClassVar[SessionState]
    STARTING_MONITORS: _ClassVar[SessionState]
    STARTING_EXECUTORS: _ClassVar[SessionState]
    RUNNING: _ClassVar[SessionState]
    TEARDOWN: _ClassVar[SessionState]
    REPORTING: _ClassVar[SessionState]
    COMPLETED: _ClassVar[SessionState]
    FAILED: _ClassVar[SessionState]
    STOPPED: _ClassVar[SessionState]

class AgentRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGENT_ROLE_UNSPECIFIED: _ClassVar[AgentRole]
    EXECUTOR: _ClassVar[AgentRole]
    MONITOR: _ClassVar[AgentRole]

class CommandKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMMAND_KIND_UNSPECIFIED: _ClassVar[CommandKind]
    CONFIGURE: _ClassVar[CommandKind]
    START: _ClassVar[CommandKind]
    STOP: _ClassVar[CommandKind]
    SHUTDOWN: _ClassVar[CommandKind]

class AgentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGENT_STATE_UNSPECIFIED: _ClassVar[AgentState]
    IDLE: _ClassVar[AgentState]
    CONFIGURED: _ClassVar[AgentState]
    BUSY: _ClassVar[AgentState]
    LOST: _ClassVar[AgentState]
    GONE: _ClassVar[AgentState]
SESSION_STATE_UNSPECIFIED: SessionState
PENDING: SessionState
VALIDATING: SessionState
EXPANDING: SessionState
DEPLOYING: SessionState
PREPARING: SessionState
STARTING_MONITORS: SessionState
STARTING_EXECUTORS: SessionState
RUNNING: SessionState
TEARDOWN: SessionState
REPORTING: SessionState
COMPLETED: SessionState
FAILED: SessionState
STOPPED: SessionState
AGENT_ROLE_UNSPECIFIED: AgentRole
EXECUTOR: AgentRole
MONITOR: AgentRole
COMMAND_KIND_UNSPECIFIED: CommandKind
CONFIGURE: CommandKind
START: CommandKind
STOP: CommandKind
SHUTDOWN: CommandKind
AGENT_STATE_UNSPECIFIED: AgentState
IDLE: AgentState
CONFIGURED: AgentState
BUSY: AgentState
LOST: AgentState
GONE: AgentState

class StartSessionRequest(_message.Message):
    __slots__ = ("recipe_yaml", "recipe_path", "session_id")
    RECIPE_YAML_FIELD_NUMBER: _ClassVar[int]
    RECIPE_PATH_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    recipe_yaml: str
    recipe_path: str
    session_id: str
    def __init__(self, recipe_yaml: _Optional[str] = ..., recipe_path: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class SessionRef(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListReply(_message.Message):
    __slots__ = ("sessions",)
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[SessionStatus]
    def __init__(self, sessions: _Optional[_Iterable[_Union[SessionStatus, _Mapping]]] = ...) -> None: ...

class StopRequest(_message.Message):
    __slots__ = ("session_id", "reason")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    reason: str
    def __init__(self, session_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("session_id", "max_rate_hz")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    max_rate_hz: float
    def __init__(self, session_id: _Optional[str] = ..., max_rate_hz: _Optional[float] = ...) -> None: ...

class TrialProgress(_message.Message):
    __slots__ = ("trial_id", "index", "total", "phase", "elapsed_s", "duration_s")
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    trial_id: str
    index: int
    total: int
    phase: str
    elapsed_s: float
    duration_s: float
    def __init__(self, trial_id: _Optional[str] = ..., index: _Optional[int] = ..., total: _Optional[int] = ..., phase: _Optional[str] = ..., elapsed_s: _Optional[float] = ..., duration_s: _Optional[float] = ...) -> None: ...

class SessionStatus(_message.Message):
    __slots__ = ("session_id", "scenario", "state", "state_name", "trial", "trials_total", "trials_done", "trials_skipped", "elapsed_s", "error_code", "error_message", "run_dir", "bus_endpoint", "agents", "rejected_calls")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SCENARIO_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_NAME_FIELD_NUMBER: _ClassVar[int]
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    TRIALS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    TRIALS_DONE_FIELD_NUMBER: _ClassVar[int]
    TRIALS_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RUN_DIR_FIELD_NUMBER: _ClassVar[int]
    BUS_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_CALLS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    scenario: str
    state: SessionState
    state_name: str
    trial: TrialProgress
    trials_total: int
    trials_done: int
    trials_skipped: int
    elapsed_s: float
    error_code: str
    error_message: str
    run_dir: str
    bus_endpoint: str
    agents: _containers.RepeatedCompositeFieldContainer[AgentInfo]
    rejected_calls: int
    def __init__(self, session_id: _Optional[str] = ..., scenario: _Optional[str] = ..., state: _Optional[_Union[SessionState, str]] = ..., state_name: _Optional[str] = ..., trial: _Optional[_Union[TrialProgress, _Mapping]] = ..., trials_total: _Optional[int] = ..., trials_done: _Optional[int] = ..., trials_skipped: _Optional[int] = ..., elapsed_s: _Optional[float] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ..., run_dir: _Optional[str] = ..., bus_endpoint: _Optional[str] = ..., agents: _Optional[_Iterable[_Union[AgentInfo, _Mapping]]] = ..., rejected_calls: _Optional[int] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("status", "snapshot")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    status: SessionStatus
    snapshot: Snapshot
    def __init__(self, status: _Optional[_Union[SessionStatus, _Mapping]] = ..., snapshot: _Optional[_Union[Snapshot, _Mapping]] = ...) -> None: ...

class Snapshot(_message.Message):
    __slots__ = ("session_id", "trial_id", "seq", "requests_per_s", "output_tokens_per_s", "ttft_p50_ms", "ttft_p99_ms", "requests", "errors", "json", "missing_executors")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_S_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_PER_S_FIELD_NUMBER: _ClassVar[int]
    TTFT_P50_MS_FIELD_NUMBER: _ClassVar[int]
    TTFT_P99_MS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    MISSING_EXECUTORS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    trial_id: str
    seq: int
    requests_per_s: float
    output_tokens_per_s: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    requests: int
    errors: int
    json: str
    missing_executors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session_id: _Optional[str] = ..., trial_id: _Optional[str] = ..., seq: _Optional[int] = ..., requests_per_s: _Optional[float] = ..., output_tokens_per_s: _Optional[float] = ..., ttft_p50_ms: _Optional[float] = ..., ttft_p99_ms: _Optional[float] = ..., requests: _Optional[int] = ..., errors: _Optional[int] = ..., json: _Optional[str] = ..., missing_executors: _Optional[_Iterable[str]] = ...) -> None: ...

class ResultsReply(_message.Message):
    __slots__ = ("session_id", "run_dir", "trials")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_DIR_FIELD_NUMBER: _ClassVar[int]
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    run_dir: str
    trials: _containers.RepeatedCompositeFieldContainer[TrialResult]
    def __init__(self, session_id: _Optional[str] = ..., run_dir: _Optional[str] = ..., trials: _Optional[_Iterable[_Union[TrialResult, _Mapping]]] = ...) -> None: ...

class TrialResult(_message.Message):
    __slots__ = ("trial_id", "directory", "passed", "summary_json")
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_JSON_FIELD_NUMBER: _ClassVar[int]
    trial_id: str
    directory: str
    passed: bool
    summary_json: str
    def __init__(self, trial_id: _Optional[str] = ..., directory: _Optional[str] = ..., passed: _Optional[bool] = ..., summary_json: _Optional[str] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("role", "agent_id", "node", "pid", "session_id")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    role: AgentRole
    agent_id: str
    node: str
    pid: int
    session_id: str
    def __init__(self, role: _Optional[_Union[AgentRole, str]] = ..., agent_id: _Optional[str] = ..., node: _Optional[str] = ..., pid: _Optional[int] = ..., session_id: _Optional[str] = ...) -> None: ...

class RegisterReply(_message.Message):
    __slots__ = ("agent_id", "session_id", "lease_s", "heartbeat_interval_s", "sample_endpoint", "executor_index", "executor_count")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_S_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_INDEX_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_COUNT_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    session_id: str
    lease_s: float
    heartbeat_interval_s: float
    sample_endpoint: str
    executor_index: int
    executor_count: int
    def __init__(self, agent_id: _Optional[str] = ..., session_id: _Optional[str] = ..., lease_s: _Optional[float] = ..., heartbeat_interval_s: _Optional[float] = ..., sample_endpoint: _Optional[str] = ..., executor_index: _Optional[int] = ..., executor_count: _Optional[int] = ...) -> None: ...

class AgentRef(_message.Message):
    __slots__ = ("agent_id", "session_id")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    session_id: str
    def __init__(self, agent_id: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("kind", "trial_id", "config_json")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    kind: CommandKind
    trial_id: str
    config_json: str
    def __init__(self, kind: _Optional[_Union[CommandKind, str]] = ..., trial_id: _Optional[str] = ..., config_json: _Optional[str] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("agent_id", "state", "trial_id", "requests_done", "trial_recorded", "trial_in_flight", "session_id")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_DONE_FIELD_NUMBER: _ClassVar[int]
    TRIAL_RECORDED_FIELD_NUMBER: _ClassVar[int]
    TRIAL_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    state: AgentState
    trial_id: str
    requests_done: int
    trial_recorded: int
    trial_in_flight: int
    session_id: str
    def __init__(self, agent_id: _Optional[str] = ..., state: _Optional[_Union[AgentState, str]] = ..., trial_id: _Optional[str] = ..., requests_done: _Optional[int] = ..., trial_recorded: _Optional[int] = ..., trial_in_flight: _Optional[int] = ..., session_id: _Optional[str] = ...) -> None: ...

class HeartbeatReply(_message.Message):
    __slots__ = ("lease_s", "known")
    LEASE_S_FIELD_NUMBER: _ClassVar[int]
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    lease_s: float
    known: bool
    def __init__(self, lease_s: _Optional[float] = ..., known: _Optional[bool] = ...) -> None: ...

class AgentReport(_message.Message):
    __slots__ = ("agent_id", "trial_id", "ok", "error", "stats_json", "batches_sent", "session_id")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STATS_JSON_FIELD_NUMBER: _ClassVar[int]
    BATCHES_SENT_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    trial_id: str
    ok: bool
    error: str
    stats_json: str
    batches_sent: int
    session_id: str
    def __init__(self, agent_id: _Optional[str] = ..., trial_id: _Optional[str] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ..., stats_json: _Optional[str] = ..., batches_sent: _Optional[int] = ..., session_id: _Optional[str] = ...) -> None: ...

class ReportReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AgentInfo(_message.Message):
    __slots__ = ("agent_id", "role", "node", "state", "last_heartbeat_age_s")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_AGE_S_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    role: AgentRole
    node: str
    state: AgentState
    last_heartbeat_age_s: float
    def __init__(self, agent_id: _Optional[str] = ..., role: _Optional[_Union[AgentRole, str]] = ..., node: _Optional[str] = ..., state: _Optional[_Union[AgentState, str]] = ..., last_heartbeat_age_s: _Optional[float] = ...) -> None: ...

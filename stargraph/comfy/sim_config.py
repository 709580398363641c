"""Knobs of the ComfyUI simulator: how it runs (`SimulatorConfig`) and what goes wrong (`Faults`).

`SimulatorConfig` is fixed for a simulator's life. `Faults` is the live, mutable fault state:
the config carries the initial one, and tests or drills change `simulator.faults` at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# What the recorded server offered (protocol §1.7).
RECORDED_SAMPLERS = (
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2",
    "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu",
    "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm", "ipndm_v", "deis",
    "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp",
    "er_sde", "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2",
)  # fmt: skip
RECORDED_SCHEDULERS = (
    "simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
    "linear_quadratic", "kl_optimal",
)  # fmt: skip
RECORDED_CHECKPOINT = "random-sd15.safetensors"


@dataclass
class Faults:
    """Live fault injection. Every field may be changed while the simulator runs."""

    # Runtime errors: the next `fail_prompts` prompts raise `fail_exception_type` at `fail_node`
    # (a node id or class_type; None = the KSampler, else the first node that runs), after
    # `fail_at_step` sampler steps when the node samples (None = before its first step).
    fail_prompts: int = 0
    fail_node: str | None = None
    fail_at_step: int | None = None
    fail_message: str = "simulated failure"
    fail_exception_type: str = "RuntimeError"
    # Any prompt with this text in a string input fails at that node (None turns it off).
    error_marker: str | None = "[simulate-error]"
    # Socket drop: instead of sending the next `drop_on` event (e.g. "executed", "progress"),
    # close every socket; the event is lost. Repeats `drop_times` times, then disarms.
    drop_on: str | None = None
    drop_times: int = 1
    # Silence: sockets stay open but receive nothing (the prompt keeps running).
    silent: bool = False
    # Slow start: seconds between taking a prompt from the queue and `execution_start`.
    start_delay: float = 0.0
    # Slow HTTP: seconds added to every HTTP answer (ComfyUI stalls under load, protocol §3.12).
    http_delay: float = 0.0
    # Refusal: HTTP answers 503 and WebSocket handshakes are denied with 503 (`/sim/*` excepted).
    refuse: bool = False


@dataclass(frozen=True)
class SimulatorConfig:
    """How a simulated ComfyUI behaves. Defaults suit demos; tests shorten `step_time`."""

    step_time: float = 0.05  # seconds per sampler step
    # Spread of each step's time around `step_time` (standard deviation ÷ mean, drawn from a
    # normal distribution kept within ±3 spreads): real steps vary (7-40 % in the recordings,
    # on a CPU), so separate backends drift apart instead of ending jobs in step.
    step_jitter: float = 0.0
    jitter_seed: int | None = None  # None: different step times on every run
    node_time: float = 0.0  # seconds per other executed node
    load_time: float = 0.0  # seconds to load a checkpoint that is not cached
    manual_steps: bool = False  # sampler steps wait for Simulator.release_steps() (tests)
    checkpoints: tuple[str, ...] = (RECORDED_CHECKPOINT,)
    corrupt_checkpoints: tuple[str, ...] = ()  # offered, accepted, and failing when loaded
    samplers: tuple[str, ...] = RECORDED_SAMPLERS
    schedulers: tuple[str, ...] = RECORDED_SCHEDULERS
    previews: bool = True  # binary preview frames per sampler step (`--preview-method auto`)
    preview_size: int = 256  # longest side; the real default is 512 (small images are enlarged)
    history_size: int = 10000
    faults: Faults = field(default_factory=Faults)

    @property
    def offered_checkpoints(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.checkpoints, *self.corrupt_checkpoints)))

"""The run config: one validated schema, loaded from YAML, written back in full.

Every part of tui-tuner (CLI, TUI, worker, estimator) reads a `RunConfig`. Loading
never stops at the first problem: `load_config` returns every issue it finds, each
with the dotted key, the YAML line, the offending value and what is allowed.

    tui-tuner config check configs/quickstart.yaml --set training.learning_rate=1e-4
"""

from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from tui_tuner.config.defaults import DEMO_MODEL_ID
from tui_tuner.config.trackers import normalize_report_to

BUILTIN_TEMPLATES = ("chatml", "llama-3", "zephyr", "alpaca")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """YAML reads `max_steps: true` as a bool, which pydantic would quietly turn into 1."""
        if isinstance(value, bool) and info.field_name:
            ann = cls.model_fields[info.field_name].annotation
            if _numeric_only(ann):
                raise ValueError(f"expected a number, got `{str(value).lower()}` (a yes/no value)")
        return value


def _numeric_only(ann: Any) -> bool:
    """Whether a field annotation accepts numbers but not bools (`int`, `float | None`, ...)."""
    args = get_args(ann) if get_origin(ann) in (Union, UnionType) else (ann,)
    return bool(args) and bool not in args and any(a in (int, float) for a in args) and str not in args


class ModelConfig(_Section):
    name_or_path: str = DEMO_MODEL_ID
    """Hub id (e.g. `TinyLlama/TinyLlama-1.1B-Chat-v1.0`), a local model folder, or the built-in demo model."""
    revision: str | None = None
    """Hub branch, tag or commit to pin; null uses the default branch."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Precision of the (unquantized) weights; auto picks bfloat16 on GPUs that support it, else float16 on GPU, float32 on CPU."""
    max_seq_length: int = Field(1024, ge=16, le=262144)
    """Longest tokenized example; longer ones are truncated (data check reports how many)."""
    trust_remote_code: bool = False
    """Run Python code shipped with a hub model. Only enable for repositories you trust."""
    chat_template: str = "auto"
    """`auto` (the tokenizer's own, else chatml), one of chatml / llama-3 / zephyr / alpaca, or a Jinja template string."""


class LoraConfig(_Section):
    r: int = Field(16, ge=1, le=4096)
    """Rank of the low-rank update: higher learns more, costs more memory and disk."""
    alpha: float = Field(32, gt=0)
    """Scaling numerator: the update is multiplied by alpha / r (alpha / sqrt(r) with rsLoRA)."""
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    """Dropout on the LoRA input during training."""
    target_modules: str | list[str] = "all-linear"
    """`all-linear`, or module names such as [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]."""
    use_rslora: bool = False
    """Rank-stabilized LoRA: scale by alpha / sqrt(r) so higher ranks keep learning."""
    bias: Literal["none", "all", "lora_only"] = "none"
    """Which biases are trained alongside the adapter."""


class QuantizationConfig(_Section):
    quant_type: Literal["nf4", "fp4"] = "nf4"
    """4-bit data type for QLoRA: NF4 suits normally distributed weights."""
    double_quant: bool = True
    """Quantize the quantization constants too (saves ~0.37 bits per parameter)."""
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """Precision that 4-bit weights are dequantized to for matmuls."""


class DataConfig(_Section):
    train: str = "data/sample.jsonl"
    """Training data: a .jsonl, .json, .csv or .parquet file (path relative to the config file's project), a hub dataset `org/name` (a local path of that name wins), or `hf://datasets/org/name/path/file.jsonl`."""
    eval: str | None = None
    """Optional held-out data for eval loss (a file, `org/name` or `hf://` URL as for train); else `eval_split` takes a fraction of train."""
    subset: str | None = None
    """Hub datasets: the subset (config name) to load, e.g. `main`; null takes the dataset's default."""
    split: str = "train"
    """Hub datasets: the split data.train reads, with an optional slice: `train`, `train[:2000]`, `train[10%:]`, `train+validation`."""
    eval_dataset_split: str = "test"
    """Hub datasets: the split data.eval reads (e.g. `test`, `validation[:500]`); eval_split is a fraction of train instead."""
    eval_split: float = Field(0.0, ge=0.0, lt=1.0)
    """Fraction of the training file held out for evaluation when `eval` is not given."""
    format: Literal["auto", "instruction", "chat", "sharegpt", "prompt_completion", "text", "reasoning"] = "auto"
    """Dataset format; auto detects it from the fields and says which."""
    fields: dict[str, str] = Field(default_factory=dict)
    """Map the standard field names to yours, e.g. {instruction: question, output: answer}."""
    max_samples: int | None = Field(None, ge=1)
    """Use only the first N examples (quick experiments)."""
    completion_only_loss: bool = True
    """Compute the loss on the assistant's answer only, not on the prompt."""
    system_prompt: str | None = None
    """System message prepended to every example that has none."""

    @field_validator("train", "eval")
    @classmethod
    def _hub_url(cls, value: str | None) -> str | None:
        from tui_tuner.core.hub_names import url_problem

        problem = url_problem(value) if value is not None else None
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("split", "eval_dataset_split")
    @classmethod
    def _split(cls, value: str) -> str:
        from tui_tuner.core.hub_names import split_problem

        problem = split_problem(value)
        if problem:
            raise ValueError(problem)
        return value.strip()

    @field_validator("subset")
    @classmethod
    def _subset(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("empty: name a subset (config name) of the dataset, or remove the key")
        return value


class TrainingConfig(_Section):
    epochs: float = Field(1.0, gt=0, le=1000)
    """Passes over the training data (ignored when max_steps is set)."""
    max_steps: int | None = Field(None, ge=1, le=10_000_000)
    """Stop after this many optimizer steps; overrides epochs."""
    batch_size: int = Field(2, ge=1, le=4096)
    """Examples per device per forward pass. 2-4 is a good start on one GPU."""
    grad_accumulation: int = Field(4, ge=1, le=4096)
    """Forward passes per optimizer step: effective batch = batch_size x grad_accumulation x GPUs."""
    learning_rate: float = Field(2e-4, gt=0, le=1.0)
    """Peak learning rate: ~2e-4 for LoRA/QLoRA, ~1e-5 to 2e-5 for full fine-tuning."""
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts"] = "cosine"
    """Learning-rate schedule after warmup."""
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    """Fraction of steps spent warming the learning rate up from 0."""
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    """Decoupled weight decay of AdamW."""
    optimizer: Literal[
        "adamw_torch", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "adafactor", "sgd"
    ] = "adamw_torch"
    """Optimizer; the 8-bit and paged variants (bitsandbytes) cut optimizer memory."""
    max_grad_norm: float = Field(1.0, ge=0.0)
    """Gradient clipping norm (0 disables)."""
    seed: int = 42
    """Seed for data order, LoRA init and dropout."""
    gradient_checkpointing: bool = True
    """Recompute activations in the backward pass: much less memory, ~20-30% slower."""
    logging_steps: int = Field(1, ge=1, le=10_000_000)
    """Write a loss point every N optimizer steps."""
    save_steps: int = Field(50, ge=1, le=10_000_000)
    """Save a resumable checkpoint every N steps."""
    save_total_limit: int = Field(3, ge=1, le=1000)
    """Keep at most this many checkpoints (oldest deleted first)."""
    eval_steps: int | None = Field(None, ge=1, le=10_000_000)
    """Evaluate every N steps (needs data.eval or data.eval_split)."""
    packing: bool = False
    """Pack several short examples into each sequence for throughput."""


class OutputConfig(_Section):
    runs_dir: str = "runs"
    """Folder that holds one directory per run."""
    run_name: str | None = None
    """Run name prefix; default is derived from the model and method."""


class TensorBoardSettings(_Section):
    log_dir: str | None = None
    """Folder for the event files; default `tensorboard/` in the run directory (`tensorboard --logdir runs`
    then shows every run)."""


class WandbSettings(_Section):
    project: str | None = None
    """Weights & Biases project; default $WANDB_PROJECT, else `tui-tuner`."""
    entity: str | None = None
    """Team or user that owns the project; default $WANDB_ENTITY, else your default entity."""
    mode: Literal["online", "offline", "disabled"] | None = None
    """`offline` writes the run under the run directory's `wandb/` for a later `wandb sync`; default $WANDB_MODE,
    else online."""
    group: str | None = None
    """Group runs together (a sweep, an ablation)."""


class MlflowSettings(_Section):
    tracking_uri: str | None = None
    """Where runs go: `http(s)://` a tracking server, `databricks`, or a local `file:` folder; default
    $MLFLOW_TRACKING_URI, else `file:` the runs folder's `mlruns/` (`mlflow ui --backend-store-uri` it)."""
    experiment: str | None = None
    """Experiment name (created when missing); default $MLFLOW_EXPERIMENT_NAME, else `tui-tuner`."""


class TrackioSettings(_Section):
    project: str | None = None
    """Trackio project; default `tui-tuner`. Logged locally (`trackio show`); $TRACKIO_DIR moves the store."""
    space_id: str | None = None
    """A Hugging Face Space (`user/name`) to log to instead of locally (needs the hub and a login)."""


class TrackersConfig(_Section):
    """Settings for the experiment trackers named in `report_to`."""

    run_name: str | None = None
    """The run's name on every tracker; default the run directory's name."""
    tags: list[str] = Field(default_factory=list)
    """Tags for the run (Weights & Biases tags, MLflow tags)."""
    tensorboard: TensorBoardSettings = Field(default_factory=TensorBoardSettings)
    """TensorBoard (report_to: tensorboard)."""
    wandb: WandbSettings = Field(default_factory=WandbSettings)
    """Weights & Biases (report_to: wandb)."""
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    """MLflow (report_to: mlflow)."""
    trackio: TrackioSettings = Field(default_factory=TrackioSettings)
    """Trackio (report_to: trackio)."""


class SamplesConfig(_Section):
    """Answers to a few prompts while training, so the learner watches them change step by step."""

    prompts: list[str] = Field(default_factory=list, max_length=10)
    """Prompts to answer at every eval and checkpoint step (a user turn each; the data's system prompt applies)."""
    from_eval: int = Field(0, ge=0, le=10)
    """Also take this many prompts from the eval set (data.eval or the eval split), shown beside their reference answers."""
    max_new_tokens: int = Field(48, ge=1, le=512)
    """Longest answer, in tokens: short keeps the pause in training small (it is greedy, adapter on)."""

    @property
    def enabled(self) -> bool:
        return bool(self.prompts) or self.from_eval > 0


class NotifyConfig(_Section):
    """Being told when a run ends, wherever you are: sent by the run's own supervisor process, so it
    works with the TUI closed and the SSH connection gone."""

    webhook: str | None = None
    """URL that gets a JSON POST: {run, state, step, max_steps, final_loss, eval_loss, error, hint, path}."""
    ntfy: str | None = None
    """ntfy.sh (or self-hosted ntfy) topic URL, e.g. https://ntfy.sh/my-runs-4f7a: a push to your phone."""
    command: str | None = None
    """A program to run (split like a shell would, not run through one); gets TUI_TUNER_RUN, TUI_TUNER_STATE,
    TUI_TUNER_LOSS in its environment and the JSON on stdin."""
    when: list[Literal["finished", "stopped", "failed", "crashed", "stalled"]] = Field(
        default_factory=lambda: ["finished", "failed", "crashed", "stalled"])
    """Which endings to tell about; `stalled`: running, but nothing logged for `stall_minutes`."""
    stall_minutes: float = Field(30.0, gt=0)
    """A running run that logs nothing for this long counts as stalled (told once)."""

    @property
    def enabled(self) -> bool:
        return bool(self.webhook or self.ntfy or self.command)

    @field_validator("webhook", "ntfy")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


class DistributedConfig(_Section):
    gpus: int = Field(1, ge=1, le=64)
    """Processes (GPUs) on this machine; more than 1 launches through torchrun."""
    strategy: Literal["ddp", "fsdp"] = "ddp"
    """DDP replicates the model on each GPU; FSDP shards it (full fine-tuning)."""


OBJECTIVES = ("sft", "dpo", "orpo", "kto", "reward", "grpo")
"""What a run learns from: supervised answers, preferences, a reward model, or reward functions."""

BUILTIN_REWARDS = ("format", "answer_match", "numeric_match", "length_penalty", "short")
"""GRPO reward functions tui-tuner ships (see `tui_tuner.data.rewards`)."""


def reward_name_problem(name: str) -> str | None:
    """Why `name` is neither a built-in reward nor `file.py:function` (the file itself is not read), or None."""
    builtins = ", ".join(BUILTIN_REWARDS)
    if ":" in name:
        path, _, func = name.rpartition(":")
        if path.endswith(".py") and func.isidentifier():
            return None
        return f"`{name}` is neither a built-in reward ({builtins}) nor `file.py:function`."
    if name in BUILTIN_REWARDS:
        return None
    close = difflib.get_close_matches(name, BUILTIN_REWARDS, n=1)
    hint = f" — did you mean `{close[0]}`?" if close else ""
    return f"unknown reward `{name}`: use a built-in ({builtins}) or your own `file.py:function`{hint}"


class DpoConfig(_Section):
    beta: float = Field(0.1, gt=0, le=10.0)
    """How far the model may move from the reference: higher keeps it closer (0.1 is typical; IPO uses ~0.01-0.5)."""
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust", "sigmoid_norm", "apo_zero", "apo_down"] = "sigmoid"
    """sigmoid: the original DPO loss; ipo: squared loss that resists overfitting small or noisy preference sets; hinge: SLiC; robust: tolerates flipped labels (see label_smoothing)."""
    label_smoothing: float = Field(0.0, ge=0.0, lt=0.5)
    """Assumed fraction of flipped preference labels (robust/cDPO); 0 trusts every pair."""
    max_prompt_share: float = Field(0.5, gt=0.0, lt=1.0)
    """data check warns when the prompt takes more than this share of max_seq_length (little room left for the answers)."""


class OrpoConfig(_Section):
    beta: float = Field(0.1, gt=0, le=10.0)
    """Weight of the odds-ratio preference term added to the SFT loss on the chosen answer (lambda in the paper)."""


class KtoConfig(_Section):
    beta: float = Field(0.1, gt=0, le=10.0)
    """How far the model may move from the reference (as DPO's beta)."""
    desirable_weight: float = Field(1.0, gt=0)
    """Loss weight of examples labelled desirable (label true)."""
    undesirable_weight: float = Field(1.0, gt=0)
    """Loss weight of examples labelled undesirable; raise it when they are rarer, so weight x count is about equal."""


class RewardModelConfig(_Section):
    center_rewards_coefficient: float | None = Field(None, ge=0.0)
    """Pull the rewards' mean towards 0 (e.g. 0.01) so scores from different runs are comparable; null turns it off."""


class RewardSpec(_Section):
    function: str
    """A built-in (format, answer_match, numeric_match, length_penalty, short) or `file.py:function` (your own code: it runs in the worker)."""
    weight: float = 1.0
    """Weight of this reward in the sum GRPO ranks completions by."""
    column: str = "answer"
    """Dataset column the answer_match / numeric_match built-ins compare against."""
    target_chars: int = Field(200, ge=1)
    """length_penalty / short: completions longer than this many characters lose reward."""


class GrpoConfig(_Section):
    num_generations: int = Field(4, ge=2, le=256)
    """Completions sampled per prompt; GRPO ranks them against each other (batch_size x grad_accumulation must divide by it)."""
    max_completion_length: int = Field(256, ge=1, le=65536)
    """Longest generated completion in tokens; longer ones are cut (and count as clipped)."""
    max_prompt_length: int = Field(512, ge=1, le=65536)
    """data check warns about prompts longer than this many tokens."""
    temperature: float = Field(1.0, gt=0.0, le=5.0)
    """Sampling temperature: GRPO needs varied completions to learn from, so keep it near 1."""
    beta: float = Field(0.0, ge=0.0, le=10.0)
    """KL penalty towards the reference model; 0 (trl's default) needs no reference forward pass."""
    rewards: list[str | RewardSpec] = Field(default_factory=lambda: ["format", "answer_match"])
    """Reward functions: built-in names or `file.py:function`, or {function, weight, column, target_chars} entries. A user file runs its code in the worker."""
    log_completions: int = Field(4, ge=0, le=64)
    """Latest sampled completions (with their rewards) written to events for the Train screen; 0 turns it off."""


class RunConfig(_Section):
    """A complete, validated description of one training run."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    """The base model and how it is loaded."""
    objective: Literal["sft", "dpo", "orpo", "kto", "reward", "grpo"] = "sft"
    """sft: learn answers; dpo/orpo: learn from chosen vs rejected pairs; kto: from answers labelled good/bad; reward: train a reward model on pairs; grpo: sample answers and learn from reward functions."""
    init_adapter: str | None = None
    """Start from an earlier run's adapter (a run name, run folder or adapter folder), e.g. SFT first, then DPO or GRPO."""
    method: Literal["full", "lora", "qlora"] = "lora"
    """full: train every weight; lora: train a low-rank adapter on frozen 16-bit weights; qlora: the same on 4-bit weights."""
    lora: LoraConfig = Field(default_factory=LoraConfig)
    """The adapter (used by lora and qlora)."""
    quantization: QuantizationConfig = Field(default_factory=QuantizationConfig)
    """4-bit settings (used by qlora)."""
    data: DataConfig = Field(default_factory=DataConfig)
    """The dataset and how it becomes training text."""
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    """Optimization settings."""
    output: OutputConfig = Field(default_factory=OutputConfig)
    """Where runs are written."""
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    """Multi-GPU settings."""
    dpo: DpoConfig = Field(default_factory=DpoConfig)
    """Direct preference optimization (objective: dpo): learn chosen over rejected against a frozen reference."""
    orpo: OrpoConfig = Field(default_factory=OrpoConfig)
    """Odds-ratio preference optimization (objective: orpo): SFT on chosen plus a preference term, no reference model."""
    kto: KtoConfig = Field(default_factory=KtoConfig)
    """Kahneman-Tversky optimization (objective: kto): unpaired answers labelled desirable or not."""
    reward: RewardModelConfig = Field(default_factory=RewardModelConfig)
    """Reward model training (objective: reward): a scalar head scoring chosen above rejected."""
    grpo: GrpoConfig = Field(default_factory=GrpoConfig)
    """Group relative policy optimization (objective: grpo): sample several answers per prompt, reward them, learn."""
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    """Tell a webhook, an ntfy topic or a command when the run ends (optional)."""
    samples: SamplesConfig = Field(default_factory=SamplesConfig)
    """Sample answers during training (events of kind `samples`; the Train screen's Samples panel)."""
    backend: Literal["auto", "unsloth", "transformers", "mlx"] = "auto"
    """auto: MLX on an Apple Silicon Mac with `.[mlx]` installed; Unsloth when a CUDA GPU is present and it
    imports; else transformers + peft + trl. mlx: Apple's MLX (LoRA, and QLoRA on its affine 4-bit; also runs on
    the CPU build of MLX on Linux)."""
    report_to: str | list[str] = "none"
    """Experiment trackers to log to as well: one name or a list — tensorboard, wandb, mlflow, trackio (their
    settings under `trackers:`), or comet_ml, clearml, dvclive, swanlab, neptune, codecarbon, azure_ml, dagshub,
    flyte (set up by their own environment variables). One that cannot start warns; training goes on."""
    trackers: TrackersConfig = Field(default_factory=TrackersConfig)
    """Each tracker's settings (project, run name, tracking URI...)."""

    @field_validator("report_to", mode="before")
    @classmethod
    def _known_trackers(cls, value: Any) -> Any:
        normalize_report_to(value)  # before the type check: its message says what a tracker list looks like
        return value

    @property
    def tracker_names(self) -> list[str]:
        """The trackers `report_to` names, in order ([] for none)."""
        return normalize_report_to(self.report_to)

    def to_yaml(self) -> str:
        """The full config (every field, defaults included) as YAML."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)

    def resolve_path(self, value: str | None, base_dir: Path | None) -> Path | None:
        """A data path from this config, made absolute against `base_dir`."""
        if value is None:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() or base_dir is None else (base_dir / p)


# ---------------------------------------------------------------------------- issues


@dataclass
class ConfigIssue:
    """One problem in a config: where it is, what is wrong and what to do."""

    key: str
    message: str
    line: int | None = None
    column: int | None = None
    value: Any = None
    file: str | None = None
    severity: Literal["error", "warning"] = "error"

    def format(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where += f":{self.line}"
        key = f" `{self.key}`" if self.key else ""
        return f"{where}:{key} {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file, "line": self.line, "column": self.column, "key": self.key,
            "message": self.message, "severity": self.severity,
            "value": self.value if isinstance(self.value, (str, int, float, bool, type(None))) else repr(self.value),
        }


class ConfigError(Exception):
    """Raised by `load_config_or_raise` with every issue found."""

    def __init__(self, issues: list[ConfigIssue]):
        self.issues = issues
        super().__init__("\n".join(i.format() for i in issues))


@dataclass
class LoadedConfig:
    """The result of loading a config: the config (None when invalid) and every issue."""

    config: RunConfig | None
    issues: list[ConfigIssue] = field(default_factory=list)
    path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> list[ConfigIssue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def ok(self) -> bool:
        return self.config is not None and not self.errors

    @property
    def base_dir(self) -> Path:
        """Relative data paths are resolved against the config file's project folder."""
        return project_dir_for(self.path)


def project_dir_for(config_path: Path | None) -> Path:
    """Folder that relative paths in a config are resolved against.

    A config under `configs/` or inside a run directory refers to `data/...` of the
    project it belongs to, so paths resolve against the parent of `configs/`; a config
    elsewhere resolves against its own folder.
    """
    if config_path is None:
        return Path.cwd()
    folder = config_path.resolve().parent
    if folder.name == "configs":
        return folder.parent
    return folder


# ---------------------------------------------------------------------------- YAML positions


MAX_YAML_DEPTH = 32
"""Deepest nesting a config may have; real configs are 3 levels deep."""
MAX_YAML_VALUES = 20_000
"""Most values a config may expand to, aliases counted each time they are used (alias bombs)."""


class YamlLimitError(yaml.YAMLError):
    """A config that is too deep, expands too far through aliases, or repeats a key."""

    def __init__(self, problem: str, mark: Any):
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class GuardedLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses alias bombs, deep nesting and duplicate keys while composing.

    The limits are checked as nodes are built, before anything walks the tree, so a 1 KB
    document whose aliases expand to billions of values fails in milliseconds.
    """

    def __init__(self, stream: Any):
        super().__init__(stream)
        self._depth = 0
        self._values = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = super().compose_node(parent, index)
            self._count(self._sizes.get(id(node), 1), event.start_mark)
            return node
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise YamlLimitError(f"nested more than {MAX_YAML_DEPTH} levels deep; a config is a few sections "
                                 "of keys, so flatten it", self.peek_event().start_mark)
        before = self._values
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._count(1, node.start_mark)
        self._sizes[id(node)] = self._values - before
        return node

    def _count(self, n: int, mark: Any) -> None:
        self._values += n
        if self._values > MAX_YAML_VALUES:
            raise YamlLimitError(f"the aliases (`*name`) expand to more than {MAX_YAML_VALUES:,} values (an alias "
                                 "bomb?); write the values out or use fewer aliases", mark)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = key_node.value
                if key in seen and key != "<<":
                    first = seen[key].start_mark.line + 1
                    raise YamlLimitError(f"duplicate key `{key}` (first on line {first}, again on line "
                                         f"{key_node.start_mark.line + 1}); YAML would silently keep only the "
                                         "last one, so delete one of them", key_node.start_mark)
                seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def safe_load_guarded(text: str) -> Any:
    """`yaml.safe_load` with the `GuardedLoader` limits (raises `yaml.YAMLError`)."""
    loader = GuardedLoader(text)
    try:
        return loader.get_single_data()
    except RecursionError:
        raise YamlLimitError("nested too deeply to read; flatten it", None) from None
    finally:
        loader.dispose()


def yaml_positions(text: str) -> dict[tuple[str, ...], tuple[int, int]]:
    """Map each key path in a YAML document to its 1-based (line, column).

    The mapping points at the key for mappings, so an error about `lora.r` lands on the
    line that says `r:`. Returns {} when the text does not parse or breaks the
    `GuardedLoader` limits; a node reached again through an alias is not walked twice.
    """
    loader = GuardedLoader(text)
    try:
        root = loader.get_single_node()
    except (yaml.YAMLError, RecursionError):
        return {}
    finally:
        loader.dispose()
    positions: dict[tuple[str, ...], tuple[int, int]] = {}
    walked: set[int] = set()

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if id(node) in walked:
            return
        walked.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = str(key_node.value)
                sub = path + (key,)
                positions.setdefault(sub, (key_node.start_mark.line + 1, key_node.start_mark.column + 1))
                walk(value_node, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                sub = path + (str(i),)
                positions.setdefault(sub, (item.start_mark.line + 1, item.start_mark.column + 1))
                walk(item, sub)

    if root is not None:
        walk(root, ())
    return positions


def _line_for(positions: dict[tuple[str, ...], tuple[int, int]], path: tuple[str, ...]) -> tuple[int | None, int | None]:
    while path:
        if path in positions:
            return positions[path]
        path = path[:-1]
    return (None, None)


# ---------------------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """Parse `training.learning_rate=1e-4` into (("training", "learning_rate"), 0.0001).

    The value is read as YAML, so `true`, `[q_proj, v_proj]` and `null` work.
    """
    if "=" not in text:
        raise ValueError(f"--set {text!r}: expected KEY=VALUE, e.g. --set training.learning_rate=1e-4")
    key, _, value = text.partition("=")
    key = key.strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
        raise ValueError(f"--set {text!r}: {key!r} is not a dotted key such as lora.r")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    if isinstance(parsed, str) and re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", parsed):
        parsed = float(parsed)  # YAML 1.1 reads 1e-4 as a string
    return tuple(key.split(".")), parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """A copy of `raw` with each KEY=VALUE override set (creating sections as needed)."""
    out = copy.deepcopy(raw)
    for text in overrides or []:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1]] = value
    return out


# ---------------------------------------------------------------------------- validation


def _fix_yaml_floats(node: Any) -> Any:
    """PyYAML (YAML 1.1) reads `2e-4` as a string; users mean a number."""
    if isinstance(node, dict):
        return {k: _fix_yaml_floats(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_fix_yaml_floats(v) for v in node]
    if isinstance(node, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", node.strip()):
        return float(node)
    return node


def _model_for_path(path: tuple[str | int, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = RunConfig
    for part in path:
        info = model.model_fields.get(str(part))
        if info is None:
            return None
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            return None
    return model


def _all_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, info in model.model_fields.items():
        keys.append(prefix + name)
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(_all_keys(ann, prefix + name + "."))
    return keys


def _did_you_mean(path: tuple[str | int, ...]) -> str:
    parent = _model_for_path(path[:-1])
    bad = str(path[-1])
    candidates = list(parent.model_fields) if parent else []
    close = difflib.get_close_matches(bad, candidates, n=1, cutoff=0.6)
    if close:
        return " — did you mean `" + ".".join([*map(str, path[:-1]), close[0]]) + "`?"
    # a key placed in the wrong section: `r:` at the top level belongs under lora
    elsewhere = [k for k in _all_keys(RunConfig) if k.split(".")[-1] == bad]
    if elsewhere:
        return f" — `{bad}` belongs at `{elsewhere[0]}`."
    if candidates:
        return " Valid keys here: " + ", ".join(candidates) + "."
    return ""


def _describe_allowed(err: dict[str, Any]) -> str:
    ctx = err.get("ctx") or {}
    kind = err["type"]
    if kind == "literal_error":
        return f"allowed: {ctx.get('expected')}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return err["msg"].lower()
    return err["msg"].removeprefix("Value error, ")


def _pydantic_issues(exc: ValidationError, positions: dict, file: str | None) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    seen: set[str] = set()
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "str", "list["))))
        key = ".".join(map(str, loc))
        line, col = _line_for(positions, tuple(map(str, loc)))
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + _did_you_mean(loc)
        elif key in seen:
            continue  # a union (str | list) reports one error per branch; one is enough
        else:
            value = err.get("input")
            msg = f"invalid value {value!r}: {_describe_allowed(err)}"
        seen.add(key)
        issues.append(ConfigIssue(key=key, message=msg, line=line, column=col, value=err.get("input"), file=file))
    return issues


def cross_field_issues(cfg: RunConfig) -> list[ConfigIssue]:
    """Combinations that each field allows alone but that cannot run together."""
    out: list[ConfigIssue] = []

    def add(key: str, message: str, severity: Literal["error", "warning"] = "error") -> None:
        out.append(ConfigIssue(key=key, message=message, severity=severity))

    fields_set = cfg.model_fields_set
    if cfg.method == "full" and "quantization" in fields_set and cfg.quantization.model_fields_set:
        add("quantization", "4-bit quantization settings are set but method is `full`: full fine-tuning "
            "cannot train 4-bit weights. Use `method: qlora`, or remove the quantization section.")
    if cfg.method == "full" and "lora" in fields_set and cfg.lora.model_fields_set:
        add("lora", "LoRA settings are set but method is `full` trains every weight; they would be "
            "ignored. Use `method: lora`, or remove the lora section.", "warning")
    if cfg.training.eval_steps is not None and cfg.data.eval is None and cfg.data.eval_split == 0:
        add("training.eval_steps", "evaluation is scheduled but there is no eval data: set `data.eval` "
            "to a held-out file or `data.eval_split` to e.g. 0.1.")
    if cfg.data.eval is not None and cfg.data.eval_split > 0:
        add("data.eval_split", "both `data.eval` and `data.eval_split` are set: the eval file is used "
            "and the split is ignored.", "warning")
    tm = cfg.lora.target_modules
    if isinstance(tm, str) and tm != "all-linear":
        add("lora.target_modules", f"`{tm}` is not a list: use `all-linear` or a list such as [q_proj, v_proj].")
    if isinstance(tm, list) and not tm:
        add("lora.target_modules", "the list is empty: name at least one module, or use `all-linear`.")
    if cfg.method == "full" and cfg.training.learning_rate > 1e-4:
        add("training.learning_rate", f"{cfg.training.learning_rate:g} is high for full fine-tuning "
            "(every weight moves); 1e-5 to 5e-5 is typical.", "warning")
    if cfg.backend == "unsloth" and cfg.distributed.gpus > 1:
        add("backend", "the Unsloth backend trains on one GPU; use `backend: transformers` with "
            "`distributed.gpus` > 1.")
    if cfg.distributed.strategy == "fsdp" and cfg.method == "qlora":
        add("distributed.strategy", "FSDP with 4-bit QLoRA weights is not supported here; use ddp.")
    if cfg.model.trust_remote_code:
        add("model.trust_remote_code", "the model's own Python code will run on this machine; only "
            "enable this for repositories you trust.", "warning")
    tmpl = cfg.model.chat_template
    if tmpl != "auto" and tmpl not in BUILTIN_TEMPLATES and "{%" not in tmpl and "{{" not in tmpl:
        close = difflib.get_close_matches(tmpl, BUILTIN_TEMPLATES, n=1)
        hint = f" — did you mean `{close[0]}`?" if close else ""
        add("model.chat_template", f"`{tmpl}` is neither a built-in template "
            f"({', '.join(BUILTIN_TEMPLATES)}) nor a Jinja template{hint}")
    out.extend(objective_issues(cfg))
    out.extend(tracker_issues(cfg))
    if cfg.output.run_name is not None:
        from tui_tuner.core.names import run_name_problem

        problem = run_name_problem(cfg.output.run_name)
        if problem:
            add("output.run_name", problem)
    return out


def tracker_issues(cfg: RunConfig) -> list[ConfigIssue]:
    """Tracker settings that `report_to` would leave unused."""
    from tui_tuner.config.trackers import CONFIGURED

    out: list[ConfigIssue] = []
    if "trackers" not in cfg.model_fields_set:
        return out
    names = cfg.tracker_names
    for name in CONFIGURED:
        section = getattr(cfg.trackers, name)
        if name not in names and section.model_dump() != type(section)().model_dump():
            out.append(ConfigIssue(key=f"trackers.{name}", severity="warning", message=(
                f"these settings are set but `report_to` does not name {name}: they would be ignored. "
                f"Add {name} to report_to, or remove the section.")))
    return out


OBJECTIVE_SECTIONS = {"dpo": "dpo", "orpo": "orpo", "kto": "kto", "reward": "reward", "grpo": "grpo"}
"""Config section -> the objective it belongs to."""


def objective_issues(cfg: RunConfig) -> list[ConfigIssue]:
    """Settings that belong to another objective, and objective-specific combinations that cannot run."""
    out: list[ConfigIssue] = []
    fields_set = cfg.model_fields_set
    for section, objective in OBJECTIVE_SECTIONS.items():
        value = getattr(cfg, section)
        # A config written in full (the TUI's new config, a run's config.yaml) carries every section at its
        # defaults: only values someone changed would be silently ignored.
        if (objective != cfg.objective and section in fields_set and value.model_fields_set
                and value.model_dump() != type(value)().model_dump()):
            out.append(ConfigIssue(key=section, severity="warning", message=(
                f"`{section}:` settings belong to `objective: {objective}`, but this run's objective is "
                f"`{cfg.objective}`: they would be ignored. Set `objective: {objective}`, or remove the section.")))
    if cfg.objective != "sft":
        if cfg.training.packing:
            out.append(ConfigIssue(key="training.packing", message=(
                f"packing joins SFT examples into one sequence; `objective: {cfg.objective}` needs each "
                "prompt and its answers kept apart. Set `training.packing: false`.")))
        if cfg.data.format not in ("auto",):
            out.append(ConfigIssue(key="data.format", severity="warning", message=(
                f"`data.format: {cfg.data.format}` is an SFT format; `objective: {cfg.objective}` reads "
                "preference, KTO or prompt-only data and detects it itself. Set `data.format: auto`.")))
    if cfg.init_adapter is not None and cfg.method == "full":
        out.append(ConfigIssue(key="init_adapter", message=(
            "`init_adapter` continues training a LoRA adapter, but `method: full` trains every weight. "
            "Use `method: lora` (or qlora), or merge the adapter first (`tui-tuner export RUN --merged`) "
            "and set `model.name_or_path` to the merged folder.")))
    if cfg.objective == "grpo":
        g = cfg.grpo
        per_step = cfg.training.batch_size * cfg.training.grad_accumulation
        if per_step % g.num_generations:
            out.append(ConfigIssue(key="grpo.num_generations", message=(
                f"GRPO compares {g.num_generations} completions of each prompt inside one batch, so "
                f"batch_size x grad_accumulation ({per_step}) must be a multiple of num_generations. "
                f"Set training.batch_size to {g.num_generations} (or a multiple), or num_generations to a "
                f"divisor of {per_step}.")))
        if not g.rewards:
            out.append(ConfigIssue(key="grpo.rewards", message=(
                "GRPO needs at least one reward function: e.g. rewards: [format, answer_match].")))
        for i, spec in enumerate(g.rewards):
            name = spec if isinstance(spec, str) else spec.function
            problem = reward_name_problem(name)
            if problem:
                out.append(ConfigIssue(key=f"grpo.rewards.{i}", value=name, message=problem))
        if g.max_completion_length >= cfg.model.max_seq_length:
            out.append(ConfigIssue(key="grpo.max_completion_length", severity="warning", message=(
                f"{g.max_completion_length} tokens of completion leave no room for the prompt within "
                f"model.max_seq_length ({cfg.model.max_seq_length}).")))
    return out


def validate_raw(raw: Any, *, text: str = "", file: str | None = None) -> LoadedConfig:
    """Validate an already-parsed mapping; `text` (the YAML source) gives line numbers."""
    positions = yaml_positions(text) if text else {}
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return LoadedConfig(None, [ConfigIssue("", f"the config must be a YAML mapping of sections "
                                               f"(model:, method:, lora:, ...), not a {type(raw).__name__}.",
                                               line=1, file=file)], raw={})
    raw = _fix_yaml_floats(raw)
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as exc:
        issues = sorted(_pydantic_issues(exc, positions, file), key=lambda i: i.line or 0)
        return LoadedConfig(None, issues, raw=raw)
    issues = cross_field_issues(cfg)
    for issue in issues:
        issue.file = file
        issue.line, issue.column = _line_for(positions, tuple(issue.key.split(".")))
    issues.sort(key=lambda i: (i.severity != "error", i.line or 0))
    errors = [i for i in issues if i.severity == "error"]
    return LoadedConfig(None if errors else cfg, issues, raw=raw)


def _yaml_syntax_issue(text: str, exc: yaml.YAMLError, file: str | None) -> ConfigIssue:
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark is not None else None
    col = mark.column + 1 if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc)
    if isinstance(exc, YamlLimitError):
        return ConfigIssue("", f"{problem}.", line=line, column=col, file=file)
    msg = f"YAML syntax error: {problem}."
    if line is not None:
        lines = text.splitlines()
        nearby = lines[max(0, line - 2): line]
        if any("\t" in s for s in nearby):
            msg += " YAML does not allow tabs for indentation: indent with spaces."
        else:
            msg += " Check the indentation and that every `key: value` has a space after the colon."
    return ConfigIssue("", msg, line=line, column=col, file=file)


def load_config_text(text: str, *, file: str | None = None, overrides: list[str] | None = None) -> LoadedConfig:
    """Parse and validate YAML text; every problem becomes a `ConfigIssue`."""
    if not text.strip():
        return LoadedConfig(None, [ConfigIssue("", "the config file is empty. Start from "
                                               "configs/quickstart.yaml or run `tui-tuner config check "
                                               "configs/quickstart.yaml` to see a valid one.", line=1, file=file)])
    try:
        raw = safe_load_guarded(text)
    except yaml.YAMLError as exc:
        return LoadedConfig(None, [_yaml_syntax_issue(text, exc, file)])
    if raw is None and not overrides:
        return LoadedConfig(None, [ConfigIssue("", "the config file has no settings (only comments). Start from "
                                               "configs/quickstart.yaml or run `tui-tuner config check "
                                               "configs/quickstart.yaml` to see a valid one.", line=1, file=file)])
    try:
        raw = apply_overrides(raw if isinstance(raw, dict) else {}, overrides) if overrides else raw
    except ValueError as exc:
        return LoadedConfig(None, [ConfigIssue("", str(exc), file="--set")])
    loaded = validate_raw(raw, text=text, file=file)
    return loaded


def _not_found_message(path: Path) -> str:
    """Why a config path is missing, and how to get the shipped one when the path names it."""
    clone = Path(__file__).resolve().parents[2]
    in_clone = not path.is_absolute() and (clone / path).is_file()
    # `tui-tuner train configs/quickstart.yaml` outside the clone: its data paths (data/sample.jsonl)
    # are relative too, so the fix is the quickstart written here, or running from the clone.
    from_clone = f" (or run from the clone: `cd {clone}`)" if in_clone else ""
    if path.as_posix().endswith("configs/quickstart.yaml"):
        return (f"file not found in {Path.cwd()}. `tui-tuner config quickstart` writes it here with its sample "
                f"data{from_clone}.")
    if in_clone:
        return f"file not found in {Path.cwd()}. tui-tuner's own {path} is in its clone: `cd {clone}` and run it there."
    return ("file not found. `tui-tuner config quickstart` writes a starting config here, and "
            "`tui-tuner config reference` lists every key.")


def load_config(path: str | Path, overrides: list[str] | None = None) -> LoadedConfig:
    """Load and validate a config file, collecting every issue (never raises on bad input)."""
    path = Path(path)
    shown = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return LoadedConfig(None, [ConfigIssue("", _not_found_message(path), file=shown)], path=path)
    except (IsADirectoryError, PermissionError) as exc:
        return LoadedConfig(None, [ConfigIssue("", f"cannot read: {exc.strerror}.", file=shown)], path=path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return LoadedConfig(None, [ConfigIssue("", f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the "
                                               "file as UTF-8.", line=line, file=shown)], path=path)
    loaded = load_config_text(text, file=shown, overrides=overrides)
    loaded.path = path
    return loaded


def load_config_or_raise(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Load a config, raising `ConfigError` with every issue when it is invalid."""
    loaded = load_config(path, overrides)
    if not loaded.ok:
        raise ConfigError(loaded.errors or loaded.issues)
    assert loaded.config is not None
    return loaded.config


def field_docs(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, docstring) for every field: the config reference."""
    rows = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        key = prefix + name
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows.append((key, "", info.description or ""))
            rows.extend(field_docs(ann, key + "."))
        else:
            default = info.get_default(call_default_factory=True)
            rows.append((key, yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("..."), info.description or ""))
    return rows

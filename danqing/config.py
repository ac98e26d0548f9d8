"""One typed config: every threshold of PIPELINE.md with its published default.

Units are in field names. A DAG param or CLI flag overrides any field with a nested dict;
the hash of the resolved config goes into lineage so a changed threshold is visible.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from danqing.errors import UserError
from danqing.paths import CRAWL_ID_PATTERN, is_local

SAMPLE_CRAWL_ID = "CC-MAIN-2099-01"  # the bundled sample crawl; no real crawl will take this id


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Shapes shared by several fields.
Share = Annotated[float, Field(ge=0.0, le=1.0)]
Seconds = Annotated[float, Field(gt=0.0)]
NonEmpty = Annotated[str, Field(min_length=1)]
HOOK = r"^$|^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"  # "" or "module:function"


def _ordered(low: float, high: float, names: str) -> None:
    """Cross-field check: a lower bound above its upper bound keeps nothing."""
    if low > high:
        raise ValueError(f"{names}: the lower bound ({low:g}) is above the upper bound ({high:g})")


class SourceConfig(Section):
    kind: Literal["commoncrawl", "sample"] = "sample"
    # Where collinfo.json and crawl-data/ live; the sample crawl is generated under root.
    commoncrawl_url: NonEmpty = "https://data.commoncrawl.org/"
    collinfo_url: NonEmpty = "https://index.commoncrawl.org/collinfo.json"
    max_warcs: int = Field(0, ge=0, description="0 = every WARC of the crawl")
    warcs_per_shard: int = Field(4, ge=1)
    # One DAG run per crawl maps one task per shard, so this is also Airflow's [core] max_map_length,
    # raised from 1024 to 8192 in docker/airflow.env: a crawl's ~150M Chinese records at 20,000 per shard.
    max_shards: int = Field(8192, ge=1, le=8192, description="at most [core] max_map_length")
    # Discovery: crawls that started before this date (or crawl id) are never queued; empty = all.
    since: str = Field("", pattern=rf"^$|^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}|{CRAWL_ID_PATTERN}")
    # Columnar URL index table root, read by commoncrawl runs: shards are byte ranges of the records in
    # the wanted languages. Over https (the default, Common Crawl's public endpoint) the crawl's
    # cc-index-table.paths.gz lists its files; s3://commoncrawl/cc-index/table/cc-main/warc/ works with
    # storage_options. Empty = plan whole WARCs (~100 TB a crawl); the sample source always does.
    index_url: str = "https://data.commoncrawl.org/cc-index/table/cc-main/warc/"
    index_memory_mb: int = Field(2048, ge=256, le=1_000_000, description="DuckDB's cap while planning; sorts spill")
    index_mimes: list[NonEmpty] = Field(["text/html", "application/xhtml+xml"], min_length=1)
    ranges_per_shard: int = Field(20_000, ge=1)
    # fsspec options for reading the source (WARCs, index), e.g. {"endpoint_url": ...} for s3.
    storage_options: dict[str, Any] = {}
    # Reading: a token bucket per worker and host, retries with backoff that honour SlowDown / 429.
    requests_per_s: float = Field(50.0, gt=0)
    burst: int = Field(50, ge=1)
    retries: int = Field(8, ge=0, le=100)
    backoff_s: float = Field(1.0, ge=0)
    max_backoff_s: float = Field(60.0, ge=0)
    timeout_s: float = Field(60.0, gt=0)
    # Two selected ranges of a WARC closer than this are fetched in one request (the gap is discarded).
    max_gap_bytes: int = Field(64_000, ge=0)
    prefetch: int = Field(8, ge=1, le=256, description="range requests in flight per open input")

    @model_validator(mode="after")
    def _check(self):
        _ordered(self.backoff_s, self.max_backoff_s, "backoff_s / max_backoff_s")
        return self


class ExtractConfig(Section):
    languages: list[NonEmpty] = Field(["zho"], min_length=1)
    min_words: int = Field(5, ge=0)
    max_words: int = Field(60, ge=1)
    domain_blacklist: list[str] = []
    max_html_bytes: int = Field(2_000_000, ge=1024)
    min_img_side_px: int = Field(2, ge=0)  # width/height attributes at or under this are tracking pixels
    # Nesting past this is an HTML bomb (parse time grows with depth x tags); checked on pages with many tags.
    max_html_depth: int = Field(1000, ge=1)
    # Text safety past the keyword floor: "module:function" of a caption, truthy = unsafe; empty = none.
    safety_classifier: str = Field("", pattern=HOOK)

    @model_validator(mode="after")
    def _check(self):
        _ordered(self.min_words, self.max_words, "min_words / max_words")
        return self


class RefineConfig(Section):
    # Language: short captions fool fastText, so the share of Han characters decides first.
    sure_han_share: Share = 0.5  # at or above (no kana/hangul): Chinese whatever fastText says
    min_han_share: Share = 0.3  # below: not Chinese whatever fastText says
    min_zh_score: Share = 0.5  # in between: fastText's zh/wuu/yue probability must reach this
    max_kana_share: Share = 0.2  # of script units; any kana plus a fastText "ja" verdict also drops
    max_hangul_share: Share = 0.2
    max_unknown_tokens: int = Field(5, ge=0)  # under the scoring model's tokenizer (score.tokenizer)
    # Normalized token entropy H/log2(n); calibrated on the 50 real DanQing captions (density.py).
    min_entropy_ratio: Share = 0.75
    # Each has a keyword list, danqing/data/safety_<category>.txt.
    safety_categories: list[Literal["porn", "gambling", "ads", "political"]] = ["porn", "gambling", "ads", "political"]
    # "module:function" taking a caption and returning a category name or None; "" = keyword lists only.
    safety_classifier: str = Field("", pattern=HOOK)
    cache_size: int = Field(100_000, ge=0, description="captions whose verdict is memoized per process")

    @model_validator(mode="after")
    def _check(self):
        _ordered(self.min_han_share, self.sure_han_share, "min_han_share / sure_han_share")
        return self


class HostBudget(Section):
    """One host's own budget; a field left out keeps the default (per_host_concurrency, per_host_requests_per_s)."""

    concurrency: int | None = Field(None, ge=1)
    requests_per_s: float | None = Field(None, ge=0, le=10_000, description="0 = no cap")


class DownloadConfig(Section):
    user_agent: NonEmpty = "danqing-pipeline/0.1 (+https://github.com/danqing-pipeline; image-text research)"
    concurrency: int = Field(64, ge=1, description="requests in flight per shard")
    # The per-host budget: requests in flight and requests started per second to any one host.
    # With coordination_url it holds across every worker, task and loop that shares the store; without,
    # each event loop keeps its own with 1/n of it (n loops per shard), as before: a budget per shard.
    per_host_concurrency: int = Field(8, ge=1)
    per_host_requests_per_s: float = Field(20.0, ge=0, le=10_000, description="0 = no cap")
    # Hosts that publish their own limits: host -> {"concurrency": C, "requests_per_s": R} (either may be left out).
    host_budgets: dict[str, HostBudget] = {}
    # Redis that shares the budgets, robots.txt, Retry-After pauses, tripped hosts and DNS answers between
    # every worker (e.g. redis://127.0.0.1:6379/2; keys under "danqing:", or ?prefix=NAME). "" = each event
    # loop keeps its own (the embedded default). Where workers run, not what they write: not in the hash.
    coordination_url: str = Field(default_factory=lambda: os.environ.get("DANQING_COORDINATION_URL", ""))
    coordination_lease_s: float = Field(5.0, ge=0.5, le=300, description="a killed worker's share returns within this")
    connect_timeout_s: Seconds = 5.0
    read_timeout_s: Seconds = 10.0
    total_timeout_s: Seconds = 20.0
    max_bytes: int = Field(20_000_000, ge=1)
    max_redirects: int = Field(3, ge=0, le=30)
    retries: int = Field(2, ge=0, le=100, description="extra tries for a transient failure within one run")
    backoff_s: float = Field(0.5, ge=0)  # first retry waits this, then doubles
    max_retry_after_s: float = Field(30.0, ge=0)  # a longer Retry-After gives up now; a rerun tries again
    host_max_failures: int = Field(16, ge=1, description="consecutive transient failures that trip a host")
    host_cooldown_s: float = Field(300.0, ge=0, le=86_400, description="a tripped host is skipped this long")
    # Also the decoded pixels a decode pool holds at once (download/pool.py): one such image, or many small ones.
    max_pixels: int = Field(40_000_000, ge=1)
    allow_loopback: bool = False
    respect_robots: bool = True
    robots_timeout_s: Seconds = 5.0
    # Host -> "ip:port" map resolved before DNS; the sample crawl points its hosts at loopback.
    host_overrides: dict[str, str] = {}
    resize_mode: Literal["no", "keep_ratio", "center_crop", "border"] = "keep_ratio"
    image_size_px: int = Field(512, ge=16, le=8192)
    jpeg_quality: int = Field(95, ge=1, le=100)
    # Resume from the shard's cache: refetch only transient failures, every failure, or nothing cached (off).
    resume: Literal["transient", "failed", "off"] = "transient"
    # thread: decoders share the event loop's process (PIL and numpy release the GIL): least CPU per image.
    # process: worker processes on pipes, ~15% more CPU, but a decoder crash costs one image, not the shard.
    decode_pool: Literal["process", "thread"] = "thread"
    decode_workers: int = Field(0, ge=0, description="for the shard, shared by its loops; 0 = one per CPU")
    # Event loops per shard, each in its own process with its own decode pool and 1/n of the limits.
    processes: int = Field(0, ge=0, description="0 = one per CPU, for shards of at least 500 URLs per loop")
    cache_flush_every: int = Field(256, ge=1, description="results per resume-cache chunk")

    @field_validator("host_overrides")
    @classmethod
    def _addresses(cls, value: dict[str, str]) -> dict[str, str]:
        for host, target in value.items():
            if not _ip_port(target):
                raise ValueError(f"{host!r} -> {target!r} is not an ip, ip:port or [ipv6]:port")
        return value


class VisualConfig(Section):
    min_aspect: float = Field(1 / 3, ge=0)  # 0: no lower bound
    max_aspect: float = Field(3.0, gt=0)
    min_side_px: int = Field(100, ge=0)  # the shortest edge must be larger than this
    min_pixel_std: float = Field(2.0, ge=0)
    min_laplacian_var: float = Field(1000.0, ge=0)  # 3x3 aperture (cv2 ksize=3) on the decoded grey image
    # Of the RGB image's 768-bin histogram (visual.measure says why), so at most log2(768) bits.
    min_hist_entropy_bits: float = Field(3.0, ge=0, le=math.log2(768))

    @model_validator(mode="after")
    def _check(self):
        _ordered(self.min_aspect, self.max_aspect, "min_aspect / max_aspect")
        return self


_K8S_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"  # a Kubernetes object name (RFC 1123 subdomain)
_ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


class PodConfig(Section):
    """Where the GPU scoring pod runs in production (operators/scoring.py); local runs ignore it."""

    image: NonEmpty = "ghcr.io/danqing-pipeline/scorer:0.1.0"  # built from docker/Dockerfile.scorer
    namespace: str = Field("danqing", pattern=_K8S_NAME)
    kubernetes_conn_id: NonEmpty = "kubernetes_default"
    service_account: str = Field("", pattern=rf"^$|{_K8S_NAME}")
    gpus: int = Field(1, ge=0, le=64)
    cpu: str = Field("8", pattern=r"^[0-9]+(\.[0-9]+)?m?$")  # a Kubernetes quantity: "8", "7.5", "7500m"
    memory: str = Field("32Gi", pattern=r"^[0-9]+(\.[0-9]+)?([KMGTPE]i?|k)?$")
    node_selector: dict[str, str] = {"nvidia.com/gpu.present": "true"}
    tolerations: list[dict[str, str]] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    startup_timeout_s: int = Field(900, ge=1)  # GPU nodes scale from zero and pull a large image
    env: dict[str, str] = {}  # plain settings for the pod, e.g. DANQING_ROOT; never a credential (refused)
    # Credentials reach the pod from Kubernetes secrets, never from its arguments or plain env (anyone who can
    # read pods reads those): env var -> "secret:key", e.g. {"DANQING_LINEAGE_URL": "danqing-lineage:url"} ...
    secret_env: dict[str, str] = {}
    # ... or every key of a secret as an env var, e.g. ["danqing-s3"] holding AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.
    env_from_secrets: list[Annotated[str, Field(pattern=_K8S_NAME)]] = []

    @field_validator("env")
    @classmethod
    def _no_credentials(cls, value: dict[str, str]) -> dict[str, str]:
        from danqing.redact import SECRET_ENV, redact

        for name, setting in value.items():
            if not re.fullmatch(_ENV_NAME, name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if SECRET_ENV.search(name) or redact(setting) != setting:
                raise ValueError(f"{name!r} holds a credential: put it in a Kubernetes secret and "
                                 f"name it in score.pod.secret_env (pod arguments and env are readable by anyone "
                                 f"who can read pods)")
        return value

    @field_validator("secret_env")
    @classmethod
    def _secret_refs(cls, value: dict[str, str]) -> dict[str, str]:
        for name, ref in value.items():
            secret, _, key = ref.partition(":")
            if not (re.fullmatch(_ENV_NAME, name) and re.fullmatch(_K8S_NAME, secret)
                    and re.fullmatch(r"[-._a-zA-Z0-9]+", key)):
                raise ValueError(f"{name!r} -> {ref!r} is not ENV_NAME -> \"secret:key\"")
        return value


class ScoreConfig(Section):
    """open_clip embeddings, similarity and the NSFW floor (stage 4).

    Production uses a multilingual model that reads Chinese, e.g. model="xlm-roberta-base-ViT-B-32",
    pretrained="laion5b_s13b_b90k" (tokenizer the same name), or "ViT-B-16-SigLIP2" / "webli".
    The default is `danqing-tiny`, a tiny randomly initialised CLIP registered by danqing.embed.model,
    so tests and the demo run offline on a CPU; its scores carry no meaning.
    """

    model: NonEmpty = "danqing-tiny"
    pretrained: str = ""  # empty = random init, seeded (no weights can be downloaded here)
    tokenizer: NonEmpty = "danqing-tiny"  # an open_clip model name whose tokenizer to use; set it with model
    batch_size: int = Field(64, ge=1, le=65_536)
    workers: int = Field(0, ge=0, le=256, description="DataLoader decode workers; 0 = decode in the main process")
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:[0-9]+)?)$")  # auto = cuda when present
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"  # auto = bf16/fp16 autocast on GPU, fp32 on CPU
    seed: int = Field(0, ge=0)
    nsfw_model: NonEmpty = "clip-zero-shot"  # key of danqing.stages.score.NSFW_SCORERS
    nsfw_max_prob: Share = 0.9
    nsfw_prompts: list[NonEmpty] = Field(["a pornographic photo", "a photo of nudity", "色情图片", "裸体照片"],
                                         min_length=1)
    safe_prompts: list[NonEmpty] = Field(["a photo", "a product photo", "a picture of people", "普通照片", "商品图片"],
                                         min_length=1)
    pod: PodConfig = PodConfig()


class DedupConfig(Section):
    max_cosine_distance: float = Field(0.1, ge=0, le=2)  # image embeddings closer than this are one group
    # Per scoring model (name or "name:weights"), where 0.1 does not fit. danqing-tiny is random:
    # every image looks alike to it (median cosine 0.94), but re-encoded copies stay under 1e-4.
    model_max_cosine_distance: dict[str, Annotated[float, Field(ge=0, le=2)]] = {"danqing-tiny": 0.0003}
    max_phash_distance: int = Field(4, ge=0, le=15)  # hamming bits on the 64-bit perceptual hash
    batch_shards: int = Field(16, ge=1)  # shards per in-batch group; cross-batch then spans the crawl
    ivf_min_rows: int = Field(50_000, ge=1)  # at or past this many vectors, range search uses an IVF index
    ivf_nprobe: int = Field(16, ge=1)  # cells probed per query (released index)
    join_nprobe: int = Field(8, ge=1)  # self-join: cells each row is compared with, per sketch
    ivf_db_cells: int = Field(3, ge=1)  # self-join: each row also sits in its this many nearest cells
    jl_dims: int = Field(64, ge=8)  # self-join: cells and candidates in a random projection this wide
    jl_miss: float = Field(1e-9, gt=0, lt=1)  # chance the projection hides one true pair (chi-square tail)
    jl_tables: int = Field(3, ge=1)  # independent sketches and cells: a pair must escape all of them
    cell_probes: int = Field(8, ge=1)  # self-join: coarse cells among whose fine cells a row's nearest are sought
    # Partitioned dedup: each pair-finding task holds about this many entries of one sketch at a
    # time (~0.5 KB each; a row sits in up to join_nprobe cells per sketch), and each partition
    # task this many rows.
    group_entries: int = Field(500_000, ge=1)
    chunk_rows: int = Field(250_000, ge=1)
    released_index: bool = True  # also drop images already released for earlier crawls

    @model_validator(mode="after")
    def _check(self):
        if self.ivf_db_cells > self.join_nprobe:  # the join compares a row within every cell it sits in
            raise ValueError(f"ivf_db_cells ({self.ivf_db_cells}) must not exceed join_nprobe ({self.join_nprobe})")
        return self


class AlignConfig(Section):
    # Cosine band per scoring model (its `model` column, with or without ":<pretrained>").
    # DanQing: Chinese-CLIP-L14 cosine 0.23..0.44 (L2 1.06..1.24). danqing-tiny is random and
    # uncalibrated: its band only trims the tails (about 5% each side on the fixture images, seed 0).
    bands: dict[str, tuple[Annotated[float, Field(ge=-1, le=1)], Annotated[float, Field(ge=-1, le=1)]]] = {
        "chinese-clip-L14": (0.23, 0.44),
        "danqing-tiny": (-0.19, 0.06),
    }

    @model_validator(mode="after")
    def _check(self):
        for model, (low, high) in self.bands.items():
            _ordered(low, high, f"bands[{model!r}]")
        return self


# What each hub gets when a target names no parts, as DanQing was released: the pairs (URLs, captions,
# provenance, scores) on Hugging Face; pairs and image tars on ModelScope. Card and plots go to both.
DEFAULT_PARTS = {"huggingface": ["pairs", "card", "plots"], "modelscope": ["pairs", "images", "card", "plots"]}
DEFAULT_CONN_IDS = {"huggingface": "huggingface_default", "modelscope": "modelscope_default"}


class PublishTarget(Section):
    """A hub dataset repo that receives every release; its token comes from the Airflow connection."""

    kind: Literal["huggingface", "modelscope"]
    repo_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
    conn_id: str = ""  # empty = huggingface_default / modelscope_default (token in the password field)
    private: bool = False
    parts: list[Literal["pairs", "images", "card", "plots"]] = []  # empty = DEFAULT_PARTS[kind]

    @model_validator(mode="after")
    def _defaults(self) -> PublishTarget:
        self.conn_id = self.conn_id or DEFAULT_CONN_IDS[self.kind]
        self.parts = self.parts or list(DEFAULT_PARTS[self.kind])
        return self


class PublishConfig(Section):
    # empty = {root}/release; DANQING_RELEASE_ROOT sets it per deployment (a local folder while root is on S3)
    release_root: str = Field(default_factory=lambda: os.environ.get("DANQING_RELEASE_ROOT", ""))
    rows_per_file: int = Field(100_000, ge=1, description="pairs per parquet file, so each stays loadable")
    # Appended to the release's tag <crawl>-<config hash>: set it to publish a changed release of the same
    # crawl and config (a tag that exists with other content is refused otherwise).
    version: str = Field("", max_length=32, pattern=r"^[A-Za-z0-9._]*$")
    license: str = "other"  # the card's license; the body says what it covers (captions, URLs, not images)
    pretty_name: str = "DanQing-style Chinese image-text pairs"
    targets: list[PublishTarget] = []  # empty = the local release folder only


class AlertsConfig(Section):
    """What pages on-call and where it goes (operators/alerts.py, docs/RUNBOOK.md). Not in the config hash:
    a threshold that changes what pages never changes a shard's output."""

    # log = the task log only; slack = SlackWebhookNotifier, smtp = SmtpNotifier, each through an Airflow
    # connection (the token or password lives there, never here). The DAG reads these when it is parsed.
    notifier: Literal["log", "slack", "smtp"] = Field(
        default_factory=lambda: os.environ.get("DANQING_ALERT_NOTIFIER", "log"))
    slack_conn_id: str = "danqing_slack"  # a slackwebhook connection: the webhook token in its password
    smtp_conn_id: str = "smtp_default"
    email_to: list[str] = Field(default_factory=lambda: [
        a.strip() for a in os.environ.get("DANQING_ALERT_EMAIL_TO", "").split(",") if a.strip()])
    # A crawl run still going this long after it was queued pages (DeadlineAlert; 0 = none); read at parse time.
    run_deadline_h: float = Field(default_factory=lambda: float(os.environ.get("DANQING_RUN_DEADLINE_H", "48")),
                                  ge=0, le=24 * 31)
    # Data quality, checked by each shard task as it finishes (no waiting for a failure):
    min_download_success: float = Field(0.8, ge=0, le=1, description="images fetched / attempted, per shard")
    max_kept_drift: float = Field(0.5, gt=0, le=10, description="|kept ratio - crawl median| / median, per stage")
    min_rows: int = Field(200, ge=1, description="shards with fewer rows in at a stage are not judged")
    min_shards: int = Field(3, ge=2, description="judged shards of a stage needed for a median")
    on_quality: Literal["alert", "fail"] = "alert"  # fail = the shard's task fails (after alerting)


class PipelineConfig(Section):
    root: NonEmpty = Field(default_factory=lambda: os.environ.get("DANQING_ROOT", str(Path("data").resolve())))
    lineage_url: str = Field(default_factory=lambda: os.environ.get("DANQING_LINEAGE_URL", ""), pattern=r"^$|://")
    storage_options: dict[str, Any] = {}
    source: SourceConfig = SourceConfig()
    extract: ExtractConfig = ExtractConfig()
    refine: RefineConfig = RefineConfig()
    download: DownloadConfig = Field(default_factory=DownloadConfig)  # reads $DANQING_COORDINATION_URL when made
    visual: VisualConfig = VisualConfig()
    score: ScoreConfig = ScoreConfig()
    dedup: DedupConfig = DedupConfig()
    align: AlignConfig = AlignConfig()
    publish: PublishConfig = Field(default_factory=PublishConfig)  # reads DANQING_RELEASE_ROOT when built
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)  # reads its env defaults per instance

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any] | None = None) -> PipelineConfig:
        """Defaults with `overrides` merged in, validated: ConfigError (one line) when something is off."""
        try:
            return cls.model_validate(_merge(cls().model_dump(), {} if overrides is None else as_overrides(overrides)))
        except ValidationError as e:
            raise ConfigError(describe(e)) from None

    def hash(self) -> str:
        """Hash of everything that changes outputs (not where they are stored)."""
        data = self.model_dump(exclude={"root", "lineage_url", "storage_options", "alerts"})
        del data["download"]["host_overrides"], data["source"]["storage_options"]  # loopback map, credentials
        del data["publish"]["targets"], data["publish"]["version"]  # where a release goes, and its tag suffix
        # Parallelism changes how fast, not what: a shard split over processes writes the same bytes;
        # so does sharing the per-host budgets through a store (whose URL may hold a password).
        for section, key in (("score", "workers"), ("download", "processes"), ("download", "decode_workers"),
                             ("download", "decode_pool"), ("download", "coordination_url"),
                             ("download", "coordination_lease_s")):
            del data[section][key]
        del data["score"]["pod"]  # where the scoring pod runs; it gets its config without this section
        blob = json.dumps(data, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def lineage(self) -> str:
        """The lineage store's URL: lineage_url, else a SQLite file under a local root."""
        if self.lineage_url:
            return self.lineage_url
        if not is_local(self.root):
            raise ValueError(f"root {self.root} is not local: set lineage_url (DANQING_LINEAGE_URL) to a database URL")
        return f"sqlite:///{self.root.removeprefix('file://')}/lineage.sqlite"

    @property
    def release_root(self) -> str:
        return self.publish.release_root or f"{self.root}/release"


class ConfigError(UserError):
    """A config that cannot run: a bound, a cross-field check or the shape of the overrides."""


_UNSHOWN = {"lineage_url", "storage_options", "env", "secret_env"}  # fields that may hold a credential


def describe(error: ValidationError) -> str:
    """A pydantic error as one line: field path, problem, and the value given (credentials masked)."""
    from danqing.redact import redact

    parts = []
    for e in error.errors(include_url=False):
        where = ".".join(str(x) for x in e["loc"]) or "config"
        shown = not (e["type"] in ("missing", "extra_forbidden") or isinstance(e.get("input"), dict)
                     or _UNSHOWN & set(e["loc"]))
        given = f" (got {json.dumps(e.get('input'), ensure_ascii=False, default=str)[:80]})" if shown else ""
        parts.append(f"{where}: {e['msg'].removeprefix('Value error, ')}{given}")
    return redact("invalid config: " + "; ".join(parts))


def as_overrides(value: Any) -> dict:
    """`value` if it can be config overrides (an object of sections), else ConfigError."""
    if not isinstance(value, dict):
        raise ConfigError(f"config overrides must be a JSON object of sections, not a {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), "null")


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _ip_port(target: str) -> bool:
    """"ip", "ip:port" or "[v6]:port", as danqing.download.guard.parse_override reads them."""
    host, port = target, ""
    if target.startswith("["):
        host, _, port = target[1:].partition("]")
        port = port.removeprefix(":")
    elif target.count(":") == 1:
        host, port = target.split(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return not port or (port.isdigit() and 0 < int(port) < 65536)

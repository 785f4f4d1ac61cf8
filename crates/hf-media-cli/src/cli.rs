//! The command line's shape (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Text (or a chat) to images and videos through Hugging Face Inference Providers.
#[derive(Debug, Parser)]
#[command(name = "hf-media", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log what happens on the wire to stderr (also: RUST_LOG=hf_media=debug).
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate images or videos from a prompt or a chat conversation.
    Generate(Box<GenerateArgs>),
    /// List the providers hf-media knows and the tasks each serves.
    Providers {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// List the Hub's text-to-image and text-to-video models and the providers serving them live.
    Models(ModelsArgs),
    /// Serve the embedded emulator of the Hub and the providers (offline; no token needed).
    Emulator(EmulatorArgs),
    /// Run a resumable batch: every line of a JSONL or CSV file, into a dataset folder or bucket.
    Batch(Box<BatchArgs>),
    /// Serve an OpenAI-compatible images and videos API, and a gallery page (offline with --emulator).
    Serve(Box<ServeArgs>),
}

/// `hf-media serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen. Without an API key only a loopback address is allowed (see --allow-open).
    #[arg(long, default_value = hf_media_server::DEFAULT_ADDR)]
    pub addr: std::net::SocketAddr,
    /// Where media are stored and served from (with their JSON records): a folder, or object storage
    /// (`s3://bucket/prefix`, `gs://…`, `az://…`, `file:///abs/path`; credentials and endpoint from AWS_*,
    /// GOOGLE_*, AZURE_* variables).
    #[arg(short, long, default_value = "generated_media")]
    pub output: PathBuf,
    /// Answer once a media is in the folder, without waiting for the disk to have it: still atomic (no
    /// partial file is ever served), but a power loss or a system crash can lose the last seconds'
    /// media. For disposable media or a disk whose syncs are slow (no effect on object storage).
    #[arg(long)]
    pub no_sync: bool,
    /// A key clients must send as `Authorization: Bearer KEY` (repeat it for several; also
    /// HF_MEDIA_API_KEYS, comma-separated).
    #[arg(
        long = "api-key",
        value_name = "KEY",
        env = "HF_MEDIA_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,
    /// Serve on a non-loopback address without any API key.
    #[arg(long)]
    pub allow_open: bool,
    /// The URL clients reach this server at (behind a reverse proxy): media URLs are built on it.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// An origin allowed to call the API from a browser (repeatable; `*` for any).
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,
    /// Media links are signed and expire after SECS seconds (default: plain unguessable names).
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "3600")]
    pub signed_media: Option<u64>,
    /// The key media links are signed with (replicas behind one address must share it; default: random).
    #[arg(long, value_name = "KEY", env = "HF_MEDIA_SIGNING_KEY", hide_env_values = true)]
    pub signing_key: Option<String>,
    /// The largest request body, in bytes (an edit's images included).
    #[arg(long, value_name = "BYTES", default_value_t = hf_media_server::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// The most generations in flight across every client (beyond: 429 with Retry-After).
    #[arg(long, value_name = "N", default_value_t = hf_media_server::DEFAULT_MAX_CONCURRENT)]
    pub max_concurrent: usize,
    /// Requests a minute one API key (or one address, on an open server) may make.
    #[arg(long, value_name = "N")]
    pub rate_per_minute: Option<u32>,
    /// How long a client may take to send a request's headers.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub header_timeout: f64,
    /// How long in-flight work may go on after SIGTERM or Ctrl-C before it is cancelled.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub grace: f64,
    /// Where video jobs are kept: sqlite:PATH or postgres://… (shared by replicas; default: a file in
    /// the output folder).
    #[arg(long, value_name = "URL", env = "HF_MEDIA_SERVE_STATE", hide_env_values = true)]
    pub state: Option<String>,
    /// The model of an images request that names none.
    #[arg(long, value_name = "MODEL", default_value = hf_media_server::DEFAULT_IMAGE_MODEL)]
    pub default_model: String,
    /// The model of a video request that names none.
    #[arg(long, value_name = "MODEL", default_value = hf_media_server::DEFAULT_VIDEO_MODEL)]
    pub default_video_model: String,
    /// How many video jobs this process runs at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub video_concurrency: usize,
    /// Where and how providers are reached.
    #[command(flatten)]
    pub connect: ConnectFlags,
}

/// `hf-media emulator`.
#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// Where to listen (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8700")]
    pub addr: std::net::SocketAddr,
    /// A JSON file of provider behaviours: {"fal-ai": {"latency": 500, "pending_polls": 3, "fault": …}, …}.
    #[arg(long, value_name = "FILE")]
    pub behaviours: Option<PathBuf>,
}

/// `hf-media generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The prompt. Without it, the trailing user messages of --messages are used.
    pub prompt: Option<String>,
    /// Model: a Hub id (org/name), id:provider to use only that provider, or an alias
    /// (flux, flux-dev, flux-schnell, sdxl-turbo, sd-3.5-large).
    #[arg(short, long, default_value = hf_media::DEFAULT_MODEL)]
    pub model: String,
    /// How many generations to make.
    #[arg(short, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub n: u16,
    /// How many generations run at once (default: all of them).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub concurrency: Option<u16>,
    /// Where the media are written: a folder, or object storage (`s3://bucket/prefix`, `gs://…`,
    /// `az://…`, `file:///abs/path`; credentials and endpoint from AWS_*, GOOGLE_*, AZURE_* variables).
    #[arg(short, long, default_value = "generated_media")]
    pub output: PathBuf,
    /// A JSON file with an array of chat messages ({"role", "content"}), used when no PROMPT is given.
    #[arg(long, value_name = "FILE")]
    pub messages: Option<PathBuf>,
    /// An input image to edit or animate: a file, an http(s) URL or a data: URL (repeat it for a
    /// multi-image edit).
    #[arg(long = "image", value_name = "IMAGE")]
    pub images: Vec<String>,
    /// Do not download: report the provider's media URL (media answered as bytes are still saved).
    #[arg(long)]
    pub no_download: bool,
    /// One JSON object per line on stdout, each with an "event" field.
    #[arg(long)]
    pub json: bool,
    /// The generation parameters.
    #[command(flatten)]
    pub params: ParamFlags,
    /// Where and how providers are reached.
    #[command(flatten)]
    pub connect: ConnectFlags,
}

/// The generation parameters, shared by `generate` and `batch` (for `batch`, the defaults of lines that
/// do not set them).
#[derive(Debug, Args)]
pub struct ParamFlags {
    /// Aspect ratio: 1:1, 16:9, 9:16, 4:3, 3:4, 3:2, 2:3, 21:9, 9:21, 4:5, 5:4, 2:1, 1:2.
    #[arg(long, value_name = "R")]
    pub aspect_ratio: Option<String>,
    /// Width in pixels (with --height, wins over --aspect-ratio).
    #[arg(long, value_name = "W")]
    pub width: Option<u32>,
    /// Height in pixels.
    #[arg(long, value_name = "H")]
    pub height: Option<u32>,
    /// What the media should not show.
    #[arg(long, value_name = "TEXT")]
    pub negative_prompt: Option<String>,
    /// Random seed, for reproducible media.
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Denoising steps.
    #[arg(long, value_name = "N")]
    pub steps: Option<u32>,
    /// Guidance scale.
    #[arg(long, value_name = "G")]
    pub guidance_scale: Option<f64>,
    /// How far an edit may move from the input image, from 0 (keep it) to 1 (ignore it).
    #[arg(long, value_name = "S")]
    pub strength: Option<f64>,
    /// Scheduler / sampler name.
    #[arg(long)]
    pub scheduler: Option<String>,
    /// Number of video frames.
    #[arg(long, value_name = "N")]
    pub num_frames: Option<u32>,
    /// Video resolution, such as 480p or 720p.
    #[arg(long, value_name = "R")]
    pub resolution: Option<String>,
    /// Extra provider parameter, merged into the payload; the value is JSON (or a plain string).
    #[arg(long = "param", value_name = "KEY=JSON")]
    pub params: Vec<String>,
    /// The task: picks between a model's text and image tasks, or image-to-video over image-to-image
    /// (default: decided from the inputs and what the model's providers serve).
    #[arg(long, value_enum)]
    pub task: Option<MediaTask>,
}

/// Where and how providers are reached, shared by `generate` and `batch`.
#[derive(Debug, Args)]
pub struct ConnectFlags {
    /// Providers to try first, comma-separated, before the rest in the Hub's order.
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    pub prefer: Vec<String>,
    /// A provider's own key, to call it directly instead of through the router (repeatable). Keys are
    /// also read from each provider's variable: FAL_KEY, REPLICATE_API_TOKEN, TOGETHER_API_KEY,
    /// NSCALE_API_KEY, WAVESPEED_API_KEY, ZAI_API_KEY, NOVITA_API_KEY.
    #[arg(long = "provider-key", value_name = "NAME=KEY")]
    pub provider_keys: Vec<String>,
    /// The API address to use for a provider called with its own key (a proxy, a regional endpoint).
    #[arg(long = "provider-url", value_name = "NAME=URL")]
    pub provider_urls: Vec<String>,
    /// Adds a provider the Hub does not list: any server speaking the OpenAI images API
    /// (`POST {URL}/v1/images/generations`); use it with `-m MODEL:NAME`, and its key with --provider-key.
    #[arg(long = "openai-provider", value_name = "NAME=URL")]
    pub openai_providers: Vec<String>,
    /// Bill router calls to this organization (X-HF-Bill-To).
    #[arg(long, value_name = "ORG")]
    pub bill_to: Option<String>,
    /// Largest media accepted, in bytes (a larger one is abandoned as it arrives, never buffered whole).
    #[arg(long, value_name = "BYTES", default_value_t = hf_media::sink::DEFAULT_MAX_BYTES)]
    pub max_media_bytes: u64,
    /// Largest input image read, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = hf_media::DEFAULT_MAX_INPUT_BYTES)]
    pub max_input_bytes: u64,
    /// Overall deadline of each generation, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 1800.0)]
    pub timeout: f64,
    /// The Hub's URL.
    #[arg(
        long,
        env = "HF_ENDPOINT",
        default_value = "https://huggingface.co",
        hide_env_values = true
    )]
    pub hf_endpoint: String,
    /// The router's URL.
    #[arg(long, env = "HF_ROUTER_URL", default_value = hf_media::DEFAULT_ROUTER_URL, hide_env_values = true)]
    pub router_url: String,
    /// Run against the embedded emulator instead of Hugging Face (offline; no token needed). With
    /// HF_MEDIA_EMULATOR_BEHAVIOURS=FILE, providers behave as that JSON file says (see `hf-media emulator`).
    #[arg(long, conflicts_with_all = ["hf_endpoint", "router_url"])]
    pub emulator: bool,
}

/// `hf-media batch`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BatchArgs {
    /// `status`: where a batch stands.
    #[command(subcommand)]
    pub command: Option<BatchCommand>,
    /// The input: JSONL (OpenAI Batch lines or flat rows with `prompt` or `messages`) or CSV.
    #[arg(required = true)]
    pub input: Option<PathBuf>,
    /// Where the media and result files go: a folder, or object storage (`s3://bucket/prefix`, `gs://…`,
    /// `az://…`, `file:///abs/path`).
    #[arg(short, long, required = true)]
    pub output: Option<String>,
    /// The model of lines that name none: a Hub id, id:provider, or an alias.
    #[arg(short, long, default_value = hf_media::DEFAULT_MODEL)]
    pub model: String,
    /// Generations per item, for lines that do not say.
    #[arg(short, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub n: u16,
    /// Items in flight at once.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub concurrency: u16,
    /// A rate limit per provider (repeatable): fal-ai=10/s, replicate=600/min.
    #[arg(long = "rate", value_name = "PROVIDER=N/PERIOD")]
    pub rates: Vec<String>,
    /// The batch state: sqlite:PATH, or postgres://… to share the batch between machines (default: a
    /// SQLite file in the output folder; for object storage, in the cache folder).
    #[arg(long, value_name = "URL", env = "HF_MEDIA_BATCH_STATE", hide_env_values = true)]
    pub state: Option<String>,
    /// The lease of a claimed item, in seconds (renewed while it runs; a dead worker's items are taken
    /// over when it expires).
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub lease: f64,
    /// After Ctrl-C, how long running items may finish, in seconds (a second Ctrl-C stops at once).
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub grace: f64,
    /// Refuse the whole input if a line is bad (default: bad lines go to errors.jsonl, the rest runs).
    #[arg(long)]
    pub strict: bool,
    /// The CSV column (or JSONL key) holding the prompt.
    #[arg(long, value_name = "NAME", default_value = "prompt")]
    pub prompt_column: String,
    /// The input's format, when its extension does not say.
    #[arg(long, value_enum)]
    pub format: Option<InputFormat>,
    /// Try failed items again.
    #[arg(long)]
    pub retry_failed: bool,
    /// One JSON object per line on stdout, each with an "event" field (default on a terminal: a
    /// progress bar).
    #[arg(long)]
    pub json: bool,
    /// The generation parameters of lines that do not set them.
    #[command(flatten)]
    pub params: ParamFlags,
    /// Where and how providers are reached.
    #[command(flatten)]
    pub connect: ConnectFlags,
}

/// `hf-media batch status`.
#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Where a batch stands: counts by state, failures by kind, throughput, ETA.
    Status {
        /// The batch's output (as given to `hf-media batch -o`).
        #[arg(short, long)]
        output: String,
        /// The batch state, when it is not the default one.
        #[arg(long, value_name = "URL", env = "HF_MEDIA_BATCH_STATE", hide_env_values = true)]
        state: Option<String>,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// An input format (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// One JSON object a line.
    Jsonl,
    /// A header, then rows.
    Csv,
}

/// `hf-media models`.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Only this task; without it, video models are listed first, then image models.
    #[arg(long, value_enum)]
    pub task: Option<MediaTask>,
    /// Only models this provider serves live (its Hub name, such as fal-ai).
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,
    /// Only models whose id contains this text.
    #[arg(long, value_name = "TEXT")]
    pub search: Option<String>,
    /// The most models asked from the Hub, per task (those with no live provider are then left out).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: usize,
    /// One JSON object per line on stdout: {"model", "task", "providers": [{"provider", "provider_id", "task"}]}.
    #[arg(long)]
    pub json: bool,
    /// List the embedded emulator's catalogue instead of the Hub's (offline; no token needed).
    #[arg(long)]
    pub emulator: bool,
    /// The Hub's URL.
    #[arg(
        long,
        env = "HF_ENDPOINT",
        default_value = "https://huggingface.co",
        hide_env_values = true
    )]
    pub hf_endpoint: String,
}

/// A media task (`--task`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MediaTask {
    /// An image from a prompt.
    TextToImage,
    /// A video from a prompt.
    TextToVideo,
    /// An edit of the input image(s).
    ImageToImage,
    /// The input image animated.
    ImageToVideo,
    /// An image from a prompt and an optional input image.
    ImageTextToImage,
    /// A video from a prompt and an optional input image.
    ImageTextToVideo,
}

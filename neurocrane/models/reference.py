"""Two small reference models that show the :class:`~neurocrane.models.base.BaseModel`
interface (they are examples and test fixtures, not a model zoo).

* :class:`SEEGTransformer` — a transformer over per-channel tokens: time patches of raw
  signal, or spectrogram frames. Every channel contributes its own tokens, so any channel count
  works (a channel mask hides absent channels; xyz positions, when given, add a channel
  embedding). It has a masked-token reconstruction head for self-supervised pretraining and a
  classification head for fine-tuning; ``config.objective`` picks the loss, and both heads are
  always present so a pretrained checkpoint loads exactly into a model being fine-tuned.
* :class:`SpectralModel` — a linear baseline: time-averaged spectrum of each channel, a shared
  linear projection, a masked mean over channels and a linear classifier.

Example:
    >>> from neurocrane.models import SEEGTransformer, SEEGTransformerConfig
    >>> from neurocrane.preprocessing import CommonAverageReference, ZScore
    >>> cfg = SEEGTransformerConfig(patch_size=32, sampling_rate=256.0,
    ...                             preprocessing=Pipeline([CommonAverageReference(), ZScore()]).to_dict())
    >>> model = SEEGTransformer(cfg)
    >>> out = model(torch.randn(4, 6, 256), sampling_rate=256.0)   # masked-reconstruction loss in train mode
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from neurocrane.batch import SPECTRAL_AXES, TIME_AXES, NeuralBatch
from neurocrane.errors import InputError, PipelineFormatError
from neurocrane.models.base import BaseModel
from neurocrane.models.config import CraneConfig
from neurocrane.pipeline import as_batch

__all__ = ["SEEGTransformerConfig", "SEEGTransformer", "SpectralModelConfig", "SpectralModel"]

_POSITION_SCALE_MM = 100.0  # brain-sized coordinates (~±100 mm) to order-one inputs


def _positive_int(config: CraneConfig, name: str) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PipelineFormatError(f"{type(config).__name__}.{name} must be a positive integer; got {value!r}.")


def _check_choice(config: CraneConfig, name: str, choices: tuple[str, ...]) -> None:
    if getattr(config, name) not in choices:
        raise PipelineFormatError(
            f"{type(config).__name__}.{name} must be one of {choices}; got {getattr(config, name)!r}."
        )


def _supervised_loss(logits: torch.Tensor, labels: torch.Tensor | None, config: CraneConfig, model: str) -> torch.Tensor:
    if labels is None:
        raise InputError(
            f"{model}: a classification loss needs labels; pass labels=... (class indices of shape "
            "(batch,)), or call the model without requesting a loss."
        )
    labels = torch.as_tensor(labels, device=logits.device)
    if config.problem_type == "regression":
        target = labels.to(logits.dtype).reshape(logits.shape)
        return F.mse_loss(logits, target)
    if labels.ndim != 1 or labels.shape[0] != logits.shape[0] or labels.is_floating_point():
        raise InputError(
            f"{model}: labels must be integer class indices of shape ({logits.shape[0]},); got dtype "
            f"{labels.dtype} and shape {tuple(labels.shape)}."
        )
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[-1]):
        raise InputError(
            f"{model}: labels must lie in [0, {logits.shape[-1] - 1}] (num_labels={logits.shape[-1]}); "
            f"got values in [{int(labels.min())}, {int(labels.max())}]."
        )
    return F.cross_entropy(logits, labels)


def _ensure_batch(neural_data: Any, kwargs: dict[str, Any]) -> NeuralBatch:
    """``forward`` called directly (not through ``model(...)``) may get a tensor + metadata."""
    if isinstance(neural_data, NeuralBatch):
        return neural_data
    metadata = {k: kwargs.pop(k) for k in ("sampling_rate", "channel_names", "channel_positions", "channel_mask") if k in kwargs}
    batch, _ = as_batch(neural_data, **metadata)
    return batch


def _valid_channels(batch: NeuralBatch) -> torch.Tensor:
    """(batch, channels) bool mask of real channels; a sample with none keeps all (no NaN)."""
    if batch.channel_mask is None:
        return torch.ones(batch.batch_size, batch.n_channels, dtype=torch.bool, device=batch.device)
    mask = batch.channel_mask.to(batch.device)
    empty = ~mask.any(dim=1, keepdim=True)
    return mask | empty


# -- SEEGTransformer -------------------------------------------------------------------------
class SEEGTransformerConfig(CraneConfig):
    """Configuration of :class:`SEEGTransformer`.

    Args:
        token_type: ``"patch"`` (time-domain input cut into ``patch_size``-sample patches) or
            ``"spectrogram"`` (one token per frame of a ``(batch, channel, freq, time)`` input
            with ``n_freqs`` bins).
        patch_size: Samples per patch token (patch mode).
        n_freqs: Frequency bins per frame (spectrogram mode).
        hidden_size, num_layers, num_heads, intermediate_size, dropout: Transformer size.
        max_tokens: Longest token sequence per channel (learned time embedding length).
        mask_ratio: Fraction of tokens hidden for masked reconstruction.
        objective: ``"masked"`` (self-supervised reconstruction) or ``"classification"``.
        **kwargs: :class:`CraneConfig` fields (``preprocessing``, ``sampling_rate``, ...) and
            ``num_labels``.
    """

    model_type: ClassVar[str] = "neurocrane_seeg_transformer"

    token_type: str = "patch"
    patch_size: int = 32
    n_freqs: int | None = None
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 128
    dropout: float = 0.1
    max_tokens: int = 256
    mask_ratio: float = 0.3
    objective: str = "masked"

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        _check_choice(self, "token_type", ("patch", "spectrogram"))
        _check_choice(self, "objective", ("masked", "classification"))
        for name in ("patch_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "max_tokens"):
            _positive_int(self, name)
        if self.token_type == "spectrogram":
            if self.n_freqs is None:
                raise PipelineFormatError("SEEGTransformerConfig: token_type='spectrogram' needs n_freqs (bins per frame).")
            _positive_int(self, "n_freqs")
        if self.hidden_size % self.num_heads:
            raise PipelineFormatError(
                f"SEEGTransformerConfig: hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise PipelineFormatError(f"SEEGTransformerConfig.dropout must be in [0, 1); got {self.dropout!r}.")
        if not 0.0 < self.mask_ratio < 1.0:
            raise PipelineFormatError(f"SEEGTransformerConfig.mask_ratio must be in (0, 1); got {self.mask_ratio!r}.")

    @property
    def token_dim(self) -> int:
        return self.patch_size if self.token_type == "patch" else int(self.n_freqs)


class SEEGTransformer(BaseModel):
    """Transformer over per-channel tokens with masked-reconstruction and classification heads.

    ``forward`` returns ``hidden_states`` ``(batch, channels, tokens, hidden)``, ``pooled``
    ``(batch, hidden)`` (mean over real tokens), ``class_logits``, ``reconstruction``
    ``(batch, channels, tokens, token_dim)`` and ``logits`` (the reconstruction for the masked
    objective, the class logits for classification). A loss is computed when labels are given,
    when ``return_loss=True``, or in training mode for the (label-free) masked objective.

    Example:
        >>> model = SEEGTransformer(SEEGTransformerConfig(objective="classification", num_labels=3))
        >>> out = model(torch.randn(2, 5, 128), sampling_rate=256.0, labels=torch.tensor([0, 2]))
        >>> out["loss"].backward()
    """

    config_class = SEEGTransformerConfig

    def __init__(self, config: SEEGTransformerConfig) -> None:
        super().__init__(config)
        d = config.hidden_size
        self.token_proj = nn.Linear(config.token_dim, d)
        self.time_embedding = nn.Embedding(config.max_tokens, d)
        self.channel_embedding = nn.Linear(3, d)
        self.mask_token = nn.Parameter(torch.zeros(d))
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d, config.num_heads, config.intermediate_size, config.dropout,
                activation="gelu", batch_first=True, norm_first=True,
            )
            for _ in range(config.num_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.reconstruction_head = nn.Linear(d, config.token_dim)
        self.classifier = nn.Linear(d, config.num_labels)
        nn.init.normal_(self.mask_token, std=0.02)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if module is self:
            nn.init.normal_(self.mask_token, std=0.02)

    # -- tokens ---------------------------------------------------------------------------
    def tokens(self, batch: NeuralBatch) -> torch.Tensor:
        """Per-channel tokens ``(batch, channels, n_tokens, token_dim)`` of a preprocessed batch."""
        cfg = self.config
        x = batch.signals
        if cfg.token_type == "patch":
            if batch.axes != TIME_AXES:
                raise InputError(
                    f"SEEGTransformer(token_type='patch') needs time-domain data {TIME_AXES} after "
                    f"preprocessing; got axes {batch.axes}. Use token_type='spectrogram' for spectral pipelines."
                )
            n = x.shape[-1] // cfg.patch_size
            if n == 0:
                raise InputError(
                    f"SEEGTransformer: {x.shape[-1]} samples are fewer than one {cfg.patch_size}-sample patch; "
                    "use longer windows or a smaller patch_size."
                )
            tokens = x[..., : n * cfg.patch_size].reshape(*x.shape[:2], n, cfg.patch_size)
        else:
            if batch.axes != SPECTRAL_AXES:
                raise InputError(
                    f"SEEGTransformer(token_type='spectrogram') needs {SPECTRAL_AXES} data after "
                    f"preprocessing; got axes {batch.axes}. Add a spectrogram step to the pipeline."
                )
            if x.shape[2] != cfg.n_freqs:
                raise InputError(
                    f"SEEGTransformer: the model was built for {cfg.n_freqs} frequency bins, the pipeline "
                    f"gives {x.shape[2]}; the preprocessing and n_freqs disagree."
                )
            tokens = x.transpose(2, 3)
        if tokens.shape[2] > cfg.max_tokens:
            raise InputError(
                f"SEEGTransformer: {tokens.shape[2]} tokens per channel exceed max_tokens={cfg.max_tokens}; "
                "use shorter windows or a larger patch_size / hop."
            )
        return tokens.to(self.token_proj.weight.dtype)

    def _embed(self, batch: NeuralBatch, tokens: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
        h = self.token_proj(tokens)  # (B, C, N, d)
        if token_mask is not None:
            h = torch.where(token_mask.unsqueeze(-1), self.mask_token.to(h.dtype), h)
        n = tokens.shape[2]
        h = h + self.time_embedding(torch.arange(n, device=h.device))
        if batch.channel_positions is not None:
            pos = batch.channel_positions.to(device=h.device, dtype=h.dtype) / _POSITION_SCALE_MM
            h = h + self.channel_embedding(pos)[None, :, None, :]
        return h

    def _layers(self, batch: NeuralBatch, token_mask: torch.Tensor | None, keep: set[int] | None) -> tuple[dict[int, torch.Tensor], torch.Tensor, torch.Tensor]:
        tokens = self.tokens(batch)
        b, c, n, _ = tokens.shape
        valid = _valid_channels(batch)  # (B, C)
        h = self._embed(batch, tokens, token_mask)
        padding = (~valid).unsqueeze(-1).expand(b, c, n).reshape(b, c * n)
        seq = h.reshape(b, c * n, -1)
        outputs: dict[int, torch.Tensor] = {}
        if keep is None or 0 in keep:
            outputs[0] = h
        key_padding = padding if bool(padding.any()) else None
        for i, layer in enumerate(self.layers, start=1):
            seq = layer(seq, src_key_padding_mask=key_padding)
            if keep is None or i in keep:
                outputs[i] = seq.reshape(b, c, n, -1)
        final = self.norm(seq).reshape(b, c, n, -1)
        return outputs, final, valid

    # -- interface ------------------------------------------------------------------------
    def forward(
        self,
        neural_data: NeuralBatch | torch.Tensor,
        labels: torch.Tensor | None = None,
        return_loss: bool | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Run the model on a preprocessed batch (call ``model(...)`` to include preprocessing).

        Args:
            neural_data: Preprocessed :class:`NeuralBatch` (a tensor + metadata keywords is
                accepted too, used as is).
            labels: Class indices ``(batch,)`` for the classification objective.
            return_loss: Force (``True``) or skip (``False``) the loss; default: computed when
                labels are given, or in training mode for the masked objective.
            **kwargs: Other batch entries (ignored).

        Returns:
            Dict with ``logits``, ``hidden_states``, ``pooled``, ``class_logits``,
            ``reconstruction`` and, when computed, ``loss`` (plus ``target``/``token_mask``
            for the masked objective).
        """
        batch = _ensure_batch(neural_data, kwargs)
        cfg = self.config
        masked = cfg.objective == "masked" and return_loss is not False and (
            return_loss or self.training or labels is not None
        )
        tokens = self.tokens(batch)
        token_mask = self._random_token_mask(tokens, batch) if masked else None
        _, final, valid = self._layers(batch, token_mask, keep=set())
        weights = valid.to(final.dtype)[:, :, None, None]
        pooled = (final * weights).sum(dim=(1, 2)) / (weights.sum(dim=(1, 2)) * final.shape[2])
        outputs: dict[str, Any] = {
            "hidden_states": final,
            "pooled": pooled,
            "class_logits": self.classifier(pooled),
            "reconstruction": self.reconstruction_head(final),
        }
        outputs["logits"] = outputs["reconstruction"] if cfg.objective == "masked" else outputs["class_logits"]
        if masked:
            outputs["target"] = tokens
            outputs["token_mask"] = token_mask & valid.unsqueeze(-1)
        want_loss = return_loss if return_loss is not None else (labels is not None or masked)
        if want_loss:
            outputs["loss"] = self.compute_loss(outputs, labels)
        return outputs

    def _random_token_mask(self, tokens: torch.Tensor, batch: NeuralBatch) -> torch.Tensor:
        shape = tokens.shape[:3]
        # eval-mode losses use a fixed draw so validation numbers are reproducible
        generator = None if self.training else torch.Generator(device=tokens.device).manual_seed(0)
        draw = torch.rand(shape, generator=generator, device=tokens.device)
        mask = draw < self.config.mask_ratio
        first = draw.flatten(1).argmin(dim=1)  # at least one masked token per sample
        mask.view(shape[0], -1)[torch.arange(shape[0], device=tokens.device), first] = True
        return mask

    def compute_loss(self, outputs: dict[str, Any], labels: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        """Masked objective: mean squared error on the hidden tokens of real channels.
        Classification: cross-entropy (MSE for ``problem_type='regression'``) on ``labels``."""
        if self.config.objective == "masked":
            if "token_mask" not in outputs:
                raise InputError(
                    "SEEGTransformer: the masked-reconstruction loss needs the outputs of a forward pass "
                    "with masking (training mode or return_loss=True)."
                )
            mask = outputs["token_mask"].unsqueeze(-1).to(outputs["reconstruction"].dtype)
            err = (outputs["reconstruction"] - outputs["target"]).square() * mask
            return err.sum() / (mask.sum() * outputs["target"].shape[-1]).clamp_min(1.0)
        return _supervised_loss(outputs["class_logits"], labels, self.config, "SEEGTransformer")

    def encode(self, batch: NeuralBatch, layer_ids: list[int] | None = None) -> dict[str, torch.Tensor]:
        """``layer_0`` (token embeddings) … ``layer_L`` (block outputs), each
        ``(batch, channels, tokens, hidden)``, and ``final`` (after the last norm)."""
        n_layers = self.config.num_layers
        keep = None if layer_ids is None else {_layer_index(i, n_layers) for i in layer_ids}
        outputs, final, _ = self._layers(batch, None, keep)
        features = {f"layer_{i}": outputs[i] for i in sorted(outputs)}
        features["final"] = final
        return features


def _layer_index(i: int, n_layers: int) -> int:
    j = i + n_layers + 1 if i < 0 else i
    if not 0 <= j <= n_layers:
        raise InputError(
            f"layer id {i} is out of range: this model has layers 0 (embeddings) to {n_layers}; "
            f"negative ids count from the end (-1 = layer {n_layers})."
        )
    return j


# -- SpectralModel ---------------------------------------------------------------------------
class SpectralModelConfig(CraneConfig):
    """Configuration of :class:`SpectralModel`.

    Args:
        n_freqs: Frequency bins the pipeline delivers (the input of the shared projection).
        hidden_size: Width of the per-channel projection.
        **kwargs: :class:`CraneConfig` fields and ``num_labels`` / ``problem_type``.
    """

    model_type: ClassVar[str] = "neurocrane_spectral_linear"

    n_freqs: int = 40
    hidden_size: int = 32

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        _positive_int(self, "n_freqs")
        _positive_int(self, "hidden_size")


class SpectralModel(BaseModel):
    """Linear baseline on spectra: per-channel time-averaged spectrum → shared linear map →
    masked mean over channels → linear classifier.

    Example:
        >>> pipe = Pipeline([CommonAverageReference(), Spectrogram(freq_range=(0, 100), log=True)])
        >>> model = SpectralModel(SpectralModelConfig(n_freqs=26, num_labels=2, preprocessing=pipe.to_dict()))
    """

    config_class = SpectralModelConfig

    def __init__(self, config: SpectralModelConfig) -> None:
        super().__init__(config)
        self.proj = nn.Linear(config.n_freqs, config.hidden_size)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _channel_features(self, batch: NeuralBatch) -> torch.Tensor:
        if batch.axes != SPECTRAL_AXES:
            raise InputError(
                f"SpectralModel needs spectral data {SPECTRAL_AXES} after preprocessing; got axes "
                f"{batch.axes}. Give it a pipeline that ends with a spectrogram step."
            )
        if batch.signals.shape[2] != self.config.n_freqs:
            raise InputError(
                f"SpectralModel was built for {self.config.n_freqs} frequency bins; the pipeline gives "
                f"{batch.signals.shape[2]}."
            )
        return self.proj(batch.signals.mean(dim=-1).to(self.proj.weight.dtype))  # (B, C, hidden)

    def _pool(self, h: torch.Tensor, batch: NeuralBatch) -> torch.Tensor:
        w = _valid_channels(batch).to(h.dtype).unsqueeze(-1)
        return (h * w).sum(dim=1) / w.sum(dim=1)

    def forward(
        self,
        neural_data: NeuralBatch | torch.Tensor,
        labels: torch.Tensor | None = None,
        return_loss: bool | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Returns ``logits`` ``(batch, num_labels)``, ``hidden_states`` ``(batch, channels,
        hidden)``, ``pooled`` and, with labels (or ``return_loss=True``), ``loss``."""
        batch = _ensure_batch(neural_data, kwargs)
        h = self._channel_features(batch)
        pooled = self._pool(h, batch)
        outputs: dict[str, Any] = {"hidden_states": h, "pooled": pooled, "logits": self.classifier(pooled)}
        if return_loss or (return_loss is None and labels is not None):
            outputs["loss"] = self.compute_loss(outputs, labels)
        return outputs

    def compute_loss(self, outputs: dict[str, Any], labels: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        """Cross-entropy on class indices (MSE for ``problem_type='regression'``)."""
        return _supervised_loss(outputs["logits"], labels, self.config, "SpectralModel")

    def encode(self, batch: NeuralBatch, layer_ids: list[int] | None = None) -> dict[str, torch.Tensor]:
        """``layer_0``: per-channel projections ``(batch, channels, hidden)``; ``final``: the
        channel-pooled representation ``(batch, hidden)``."""
        if layer_ids is not None:
            for i in layer_ids:
                _layer_index(i, 0)
        h = self._channel_features(batch)
        return {"layer_0": h, "final": self._pool(h, batch)}


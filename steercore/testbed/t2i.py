"""testbed-t2i: a tiny text-to-image diffusion pipeline of real diffusers/transformers classes.

`ShapesPipeline` has the components of Stable Diffusion except the VAE: the UNet works on the
`pixel_unshuffle(x, 2)` of a 32×32 RGB image — a lossless, parameter-free "latent" [12, 16, 16] — and images
are decoded by `pixel_shuffle`. So the UNet's attn2 sites, the CFG batch layout and the step callbacks are
those of `StableDiffusionPipeline`, and steering code written for SD runs on it unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline, ImagePipelineOutput, UNet2DConditionModel
from diffusers.utils.torch_utils import randn_tensor
from tokenizers import Tokenizer, models, pre_tokenizers
from tokenizers.processors import TemplateProcessing
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

from steercore.core.errors import ConfigError, MissingWeightsError
from steercore.testbed.shapes import IMAGE_SIZE, VOCABULARY, to_pil

WEIGHTS = Path(__file__).resolve().parent / "weights"

PATCH = 2  # pixel_unshuffle factor: 3×32×32 image ↔ 12×16×16 latent
LATENT_CHANNELS = 3 * PATCH * PATCH
LATENT_SIZE = IMAGE_SIZE // PATCH
MAX_TOKENS = 10  # <bos> + the longest caption (7 words) + <eos>, padded
SPECIAL = {"pad": "<pad>", "unk": "<unk>", "bos": "<bos>", "eos": "<eos>"}
# Train-time noise schedule (DDPM, linear β as in Ho et al. for 32×32 images); sampling uses DDIM on it.
SCHEDULE = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                prediction_type="epsilon", clip_sample=False)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the shapes-world vocabulary, built offline (no download)."""
    words = list(SPECIAL.values()) + list(VOCABULARY)
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=SPECIAL["unk"]))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = TemplateProcessing(single="<bos> $A <eos>", special_tokens=[
        ("<bos>", words.index("<bos>")), ("<eos>", words.index("<eos>"))])
    return PreTrainedTokenizerFast(tokenizer_object=core, model_max_length=MAX_TOKENS, pad_token="<pad>",
                                   unk_token="<unk>", bos_token="<bos>", eos_token="<eos>")


def build_text_encoder(tokenizer: PreTrainedTokenizerFast, width: int = 32) -> CLIPTextModel:
    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width,
                            num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=MAX_TOKENS,
                            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id, projection_dim=width)
    return CLIPTextModel(config)


def build_unet(cross_attention_dim: int = 32) -> UNet2DConditionModel:
    """About 1M parameters; cross-attention (the steering sites down.0, mid.0, up.0, up.1) at 8×8 only, where
    self-attention is 16× cheaper than at 16×16 (2–3× faster training on CPU at the same quality)."""
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=cross_attention_dim,
        attention_head_dim=16, norm_num_groups=8)


def build_scheduler() -> DDIMScheduler:
    """DDIM on the training schedule. Its x0 estimate is clipped to [-1, 1] (the pixel range, since the latents
    are pixels): at 20 steps a small ε-model's error at high noise, amplified by 1/√ᾱ, otherwise stays as noise."""
    return DDIMScheduler(**{**SCHEDULE, "clip_sample": True}, set_alpha_to_one=False, steps_offset=1)


def build_training_scheduler() -> DDPMScheduler:
    return DDPMScheduler(**SCHEDULE)


def images_to_latents(images: torch.Tensor) -> torch.Tensor:
    """[N, 3, 32, 32] in [-1, 1] → [N, 12, 16, 16]: the pixel-unshuffle that replaces SD's VAE encoder."""
    return F.pixel_unshuffle(images, PATCH)


def latents_to_images(latents: torch.Tensor) -> torch.Tensor:
    """[N, 12, 16, 16] → [N, 3, 32, 32]: the pixel-shuffle that replaces SD's VAE decoder."""
    return F.pixel_shuffle(latents, PATCH)


class ShapesPipeline(DiffusionPipeline):
    """Text-to-image for the shapes world; the call mirrors `StableDiffusionPipeline.__call__`.

    Components: unet (UNet2DConditionModel), text_encoder (CLIPTextModel), tokenizer (PreTrainedTokenizerFast),
    scheduler (DDIMScheduler). There is no VAE: latents are `pixel_unshuffle(image, 2)` and decoding is
    `pixel_shuffle`. With CFG the UNet batch is [unconditional..., conditional...], as in SD.
    """

    model_cpu_offload_seq = "text_encoder->unet"
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(self, unet: UNet2DConditionModel, text_encoder: CLIPTextModel,
                 tokenizer: PreTrainedTokenizerFast, scheduler: DDIMScheduler):
        super().__init__()
        self.register_modules(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """Text-encoder hidden states [N, MAX_TOKENS, D] for the prompts (padded to the tokenizer's length)."""
        ids = self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        return self.text_encoder(ids.to(self.device))[0]

    @torch.no_grad()
    def __call__(self, prompt: str | list[str], num_inference_steps: int = 20, guidance_scale: float = 4.0,
                 negative_prompt: str | list[str] | None = None, num_images_per_prompt: int = 1,
                 generator: torch.Generator | list[torch.Generator] | None = None,
                 latents: torch.Tensor | None = None, output_type: str = "pil",
                 callback_on_step_end: Callable | None = None,
                 callback_on_step_end_tensor_inputs: list[str] = ["latents"], return_dict: bool = True):
        """Generate images; `output_type` is "pil", "np" ([N, H, W, 3] in [0, 1]), "pt" ([N, 3, H, W] in [0, 1])
        or "latent". A list of generators (one per image) makes each image independent of the batch it is in."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        bad = [k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]
        if bad:
            raise ConfigError(f"callback_on_step_end_tensor_inputs {bad} are not in {self._callback_tensor_inputs}")
        n = len(prompts) * num_images_per_prompt
        if isinstance(generator, list) and len(generator) != n:
            raise ConfigError(f"got {len(generator)} generators for {n} images; pass one per image or a single one")
        self._guidance_scale = guidance_scale

        prompt_embeds = self.encode_prompt(prompts).repeat_interleave(num_images_per_prompt, dim=0)  # (N, T, D)
        negative_prompt_embeds = None
        if self.do_classifier_free_guidance:
            negative = negative_prompt if negative_prompt is not None else ""
            negative = [negative] * len(prompts) if isinstance(negative, str) else list(negative)
            if len(negative) != len(prompts):
                raise ConfigError(f"got {len(negative)} negative prompts for {len(prompts)} prompts")
            negative_prompt_embeds = self.encode_prompt(negative).repeat_interleave(num_images_per_prompt, dim=0)

        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        shape = (n, self.unet.config.in_channels, self.unet.config.sample_size, self.unet.config.sample_size)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
        latents = latents * self.scheduler.init_noise_sigma

        for i, t in enumerate(self.progress_bar(timesteps)):
            if self.do_classifier_free_guidance:
                model_input = torch.cat([latents] * 2)  # (2N, C, h, w): [uncond..., cond...]
                embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
            else:
                model_input, embeds = latents, prompt_embeds
            model_input = self.scheduler.scale_model_input(model_input, t)
            noise_pred = self.unet(model_input, t, encoder_hidden_states=embeds, return_dict=False)[0]
            if self.do_classifier_free_guidance:
                uncond, cond = noise_pred.chunk(2)
                noise_pred = uncond + guidance_scale * (cond - uncond)
            latents = self.scheduler.step(noise_pred, t, latents, return_dict=False)[0]
            if callback_on_step_end is not None:
                local = {"latents": latents, "prompt_embeds": prompt_embeds,
                         "negative_prompt_embeds": negative_prompt_embeds}
                out = callback_on_step_end(self, i, t, {k: local[k] for k in callback_on_step_end_tensor_inputs})
                out = out or {}
                latents = out.pop("latents", latents)
                prompt_embeds = out.pop("prompt_embeds", prompt_embeds)
                negative_prompt_embeds = out.pop("negative_prompt_embeds", negative_prompt_embeds)

        if output_type == "latent":
            images = latents
        else:
            pixels = latents_to_images(latents.float()).clamp(-1, 1)  # (N, 3, 32, 32)
            if output_type == "pil":
                images = to_pil(pixels.cpu())
            elif output_type == "pt":
                images = (pixels + 1) / 2
            elif output_type == "np":
                images = ((pixels + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()
            else:
                raise ConfigError(f"output_type {output_type!r} is unknown; use pil, np, pt or latent")
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)


def build_pipeline(seed: int = 0) -> ShapesPipeline:
    """A freshly initialised (untrained) pipeline; deterministic in `seed`."""
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    return ShapesPipeline(unet=build_unet(), text_encoder=build_text_encoder(tokenizer), tokenizer=tokenizer,
                          scheduler=build_scheduler())


def load_pipeline(folder: str | Path | None = None) -> ShapesPipeline:
    """The shipped testbed-t2i (or the one in `folder`), in eval mode, progress bar off."""
    folder = Path(folder) if folder is not None else WEIGHTS / "t2i"
    if not (folder / "model_index.json").is_file():
        raise MissingWeightsError(f"testbed-t2i weights are missing in {folder}; run "
                                  f"workflow_scripts/train_testbed.py t2i --out {folder}")
    pipe = ShapesPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe

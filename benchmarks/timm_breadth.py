"""Breadth beyond torchvision: the edge architectures people deploy today, from timm, through every stage.

The same run as benchmarks/zoo_breadth.py (analyze at one ratio, prune to half the parameters,
all-int8, export with int8 parity that can fail, bench before and after; each model in its own
process with a time limit; resumable, rows cached), over a fixed, recorded list of timm
architectures chosen for edge use: every family the issue names (MobileNetV3/V4, EfficientNet and
-Lite, FastViT, EfficientViT, MobileViT, RepVGG, MobileOne, GhostNet, LeViT, ConvNeXt-Atto/Femto,
RegNet) and small variants of others. **It measures structure, not accuracy**: random weights
(timm's initialisation, BatchNorm statistics estimated on 64 images), `synthetic:` data, 64 px
inputs (a model whose windows or position embeddings need another size is listed in SIZES).

Layers the pruner cannot cut (fused attention qkv, re-parameterisable branches, squeeze-excite
gates, channel shuffles) are left whole, and `compress analyze` names each with its reason; the
row counts how many layers were cut. Where timm gives a model a deploy form (RepVGG, MobileOne,
FastViT: `reparameterize`), the fused form is exported and timed too (`p50_fused_ms`).

    python benchmarks/timm_breadth.py [--only mobilenetv3_small_050,fastvit_t8] [--jobs 1] [--fresh]
"""

from __future__ import annotations

import zoo_breadth

SIZE = 64
SIZES = {"tiny_vit_5m_224": 224, "efficientformer_l1": 224, "efficientformerv2_s0": 224,
         "levit_128s": 224, "levit_128": 224, "levit_conv_128s": 224}  # fixed attention biases or windows
MODELS = """mobilenetv3_small_050 mobilenetv3_small_075 mobilenetv3_small_100 mobilenetv3_large_075
mobilenetv3_large_100 mobilenetv4_conv_small mobilenetv4_conv_medium mobilenetv4_hybrid_medium
mobilenetv2_050 mobilenetv2_100 efficientnet_b0 efficientnet_b1 efficientnet_lite0
tf_efficientnet_lite0 tf_efficientnet_lite1 efficientnet_es fastvit_t8 fastvit_t12 fastvit_s12
fastvit_sa12 fastvit_mci0 efficientvit_b0 efficientvit_b1 efficientvit_m0 efficientvit_m1
efficientvit_m2 mobilevit_xxs mobilevit_xs mobilevit_s mobilevitv2_050 mobilevitv2_075
repvgg_a0 repvgg_a1 repvgg_b0 mobileone_s0 mobileone_s1 mobileone_s2 ghostnet_050 ghostnet_100
ghostnetv2_100 repghostnet_050 repghostnet_100 levit_128s levit_128 levit_conv_128s
convnext_atto convnext_femto convnext_pico convnextv2_atto convnextv2_femto regnetx_002
regnety_002 regnetx_004 regnety_004 regnety_006 resnet10t resnet14t resnet18 resnet18d
mnasnet_small mnasnet_050 mixnet_s fbnetc_100 hardcorenas_a lcnet_050 lcnet_100 tinynet_a
tinynet_e efficientformer_l1 efficientformerv2_s0 edgenext_xx_small edgenext_x_small
tiny_vit_5m_224 deit_tiny_patch16_224 vit_tiny_patch16_224 pvt_v2_b0 rexnet_100 semnasnet_075
spnasnet_100 repvit_m0_9 starnet_s1 inception_next_atto""".split()


def spec(name: str) -> tuple[str, int]:
    size = SIZES.get(name, SIZE)
    return f"timm:{name}?size={size}", size


def params(name: str) -> int:
    """Parameters at 1,000 classes (timm's own count, nothing downloaded), for ordering the run."""
    import timm

    return sum(p.numel() for p in timm.create_model(name, pretrained=False).parameters())


def fuse(model):
    """timm's deploy form (RepVGG, MobileOne, FastViT, RepGhost, RepViT, LeViT: `reparameterize`,
    `fuse`, `switch_to_deploy`), or None where the model has none."""
    from timm.utils.model import reparameterize_model

    if not any(hasattr(m, a) for m in model.modules() for a in ("reparameterize", "fuse", "switch_to_deploy")):
        return None
    return reparameterize_model(model)  # a copy


def names() -> list[str]:
    return sorted(MODELS, key=params)


TIMM = zoo_breadth.Zoo("timm_breadth", "structure, not accuracy: timm architectures, random weights, synthetic "
                       "data, small inputs", names, spec, params, {"default": SIZE, **SIZES}, fuse)


if __name__ == "__main__":
    zoo_breadth.main(TIMM, __doc__, __file__)

"""The input statistics that published weights were trained with: an image is normalised with its
weights' own mean and std (core.models.InputAdapter), not ImageNet's whatever the weights."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# OpenAI's CLIP, and open_clip's towers trained on LAION
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

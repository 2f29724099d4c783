"""Reference models the tests compare ``helpers.models`` against (no study trains them)."""

from torch import nn
from torchvision.models import resnet18


def torchvision_resnet18_cifar(num_classes: int = 10) -> nn.Module:
    """torchvision's ResNet-18 with the CIFAR stem (3x3 stride-1 conv, no max-pool): the network
    ``helpers.models.resnet18_cifar`` must equal in structure and parameter names."""
    model = resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model

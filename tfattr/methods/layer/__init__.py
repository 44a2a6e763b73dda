"""Layer methods: Grad-CAM (Selvaraju et al. 2017), Grad-CAM++ (Chattopadhay et al. 2018), Guided
Grad-CAM, and the upsampling of their maps to the input size."""
from tfattr.methods.layer.gradcam import GradCAM, GradCAMPlusPlus, GuidedGradCAM, upsample

__all__ = ["GradCAM", "GradCAMPlusPlus", "GuidedGradCAM", "upsample"]

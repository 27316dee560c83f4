"""The one device resolver: always a torch.device, and a clear error for a device that is not here."""
import pytest
import torch

from img2mesh.data.devices import resolve_device
from img2mesh.data.errors import InputError, UnavailableError


def test_named_and_automatic_devices_are_torch_devices(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for auto in (None, "auto"):
        assert resolve_device(auto) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda") and isinstance(resolve_device("cuda:1"), torch.device)


def test_unknown_or_missing_devices_are_clear_errors(monkeypatch):
    with pytest.raises(InputError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(UnavailableError, match="no CUDA GPU; use device=cpu"):
        resolve_device("cuda:0")
    with pytest.raises(UnavailableError, match="'mps' was asked for"):
        resolve_device("mps")

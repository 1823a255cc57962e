
import pytest
import torch

from pref_rl_learner.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def _state():
    return {'w': torch.arange(6.0).reshape(2, 3), 'step': 7, 'nested': {'name': 'x',
                                                                       'list': [1, 2.5]}}


def test_round_trip(tmp_path):
    save_checkpoint(tmp_path / 'c.pt', _state())
    state = load_checkpoint(tmp_path / 'c.pt')
    assert torch.equal(state['w'], _state()['w'])
    assert state['step'] == 7 and state['nested'] == {'name': 'x', 'list': [1, 2.5]}
    assert [p.name for p in tmp_path.iterdir()] == ['c.pt']  # no temp file left behind


@pytest.mark.parametrize('keep', [0, 10, 500, -1])
def test_truncated_checkpoint_is_a_clear_error(tmp_path, keep):
    save_checkpoint(tmp_path / 'c.pt', _state())
    data = (tmp_path / 'c.pt').read_bytes()
    (tmp_path / 'c.pt').write_bytes(data[:keep])
    with pytest.raises(CheckpointError, match='not a complete pref-rl checkpoint|checksum'):
        load_checkpoint(tmp_path / 'c.pt')


def test_altered_byte_is_a_checksum_error(tmp_path):
    save_checkpoint(tmp_path / 'c.pt', _state())
    data = bytearray((tmp_path / 'c.pt').read_bytes())
    data[len(data) // 3] ^= 0xFF
    (tmp_path / 'c.pt').write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match='checksum mismatch'):
        load_checkpoint(tmp_path / 'c.pt')


class Evil:
    def __reduce__(self):
        return (print, ('pickled code ran',))


def test_pickled_code_is_refused_even_with_a_valid_trailer(tmp_path, capsys):
    import hashlib
    import io

    from pref_rl_learner.checkpoint import MAGIC

    buffer = io.BytesIO()
    torch.save({'evil': Evil()}, buffer)
    payload = buffer.getvalue()
    (tmp_path / 'c.pt').write_bytes(payload + MAGIC + hashlib.sha256(payload).digest())
    with pytest.raises(CheckpointError, match='tensors and plain data'):
        load_checkpoint(tmp_path / 'c.pt')
    assert 'pickled code ran' not in capsys.readouterr().out


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match='cannot read'):
        load_checkpoint(tmp_path / 'nope.pt')

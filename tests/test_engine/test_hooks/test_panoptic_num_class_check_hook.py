"""PanopticNumClassCheckHook: thing and stuff counts against the dataset."""
from types import SimpleNamespace

import pytest

from mmcentermask.engine.hooks import PanopticNumClassCheckHook


def runner(num_things, num_stuff, metainfo):
    model = SimpleNamespace(
        bbox_head=SimpleNamespace(num_classes=num_things),
        num_stuff_classes=num_stuff)
    loader = SimpleNamespace(dataset=SimpleNamespace(metainfo=metainfo))
    return SimpleNamespace(
        model=model, train_dataloader=loader, val_dataloader=loader)


METAINFO = dict(
    classes=('a', 'b', 's1', 's2', 's3'),
    thing_classes=('a', 'b'),
    stuff_classes=('s1', 's2', 's3'))


def test_matching_counts_pass():
    hook = PanopticNumClassCheckHook()
    hook.before_train_epoch(runner(2, 3, METAINFO))
    hook.before_val_epoch(runner(2, 3, METAINFO))


@pytest.mark.parametrize('things,stuff,message', [
    (80, 3, r"num_classes=80 but the train dataset has 2 thing_classes "
     r"\['a', 'b'\]"),
    (2, 53, r'num_stuff_classes=53 but the train dataset has 3 '
     r'stuff_classes'),
])
def test_a_wrong_count_is_named_with_the_fix(things, stuff, message):
    with pytest.raises(ValueError, match=message + '.*Set num_classes'):
        PanopticNumClassCheckHook().before_train_epoch(
            runner(things, stuff, METAINFO))


def test_an_instance_dataset_is_refused():
    with pytest.raises(ValueError, match='no thing_classes / stuff_classes'):
        PanopticNumClassCheckHook().before_val_epoch(
            runner(2, 3, dict(classes=('a', 'b'))))

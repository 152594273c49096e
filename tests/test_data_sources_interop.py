"""Recipe dataset components of the interop importers: CAMUS 2019, BUSI and EchoNet-Pediatric
folders are imported once into the cache, like the other importers."""
from samfx.data.store import read_index
from tests.test_data_busi import make_busi
from tests.test_data_camus_mhd import make_camus2019
from tests.test_data_echonet_pediatric import make_pediatric
from tests.test_data_plugin import _source


def test_camus_2019_busi_and_pediatric_sources(tmp_path):
    cache = tmp_path / "cache"
    camus = _source({"name": "camus", "root": str(make_camus2019(tmp_path / "c", training=(1, 2, 3), testing=(1,)))})
    path = camus.path(str(cache))
    assert path.parent == cache and path.name.startswith("camus-")
    assert {it.patient for it in read_index(path).in_split("testing")} == {"testing_patient0001"}
    busi = _source({"name": "busi", "root": str(make_busi(tmp_path / "b", n=(3, 3, 3))), "seed": 2})
    path = busi.path(str(cache))
    assert path.name.startswith("busi-") and len(read_index(path).items) == 9 and busi.path(str(cache)) == path
    ped = _source({"name": "echonet_pediatric", "root": str(make_pediatric(tmp_path / "p")), "test_fold": 4,
                   "limit": 1})
    path = ped.path(str(cache))
    assert path.name.startswith("echonet_pediatric-")
    assert sorted(it.id for it in read_index(path).in_split("test")) == []  # fold 4 is not among the first videos
    assert sorted(it.id for it in read_index(path).in_split("train")) == ["A4C_CR1-a", "PSAX_CR1-p"]

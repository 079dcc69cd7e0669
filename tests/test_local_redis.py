from __future__ import annotations

from pathlib import Path

import redis

from producer.local_redis import LocalRedis, redis_answers


def test_private_redis_is_not_the_machine_default(
    redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    assert redis_server.port != 6379
    redis_client.set("rfleet:probe", "1")
    info = redis_client.info("server")
    assert info["tcp_port"] == redis_server.port
    assert Path(redis_client.config_get("dir")["dir"]).resolve() == redis_server.directory.resolve()


def test_restart_keeps_data_with_appendonly(tmp_path: Path) -> None:
    server = LocalRedis(directory=tmp_path / "aof", appendonly=True)
    with server:
        client = redis.Redis.from_url(server.url)
        client.set("kept", "yes")
        client.close()
        server.stop()
        assert not redis_answers(server.url)
        server.start()
        client = redis.Redis.from_url(server.url)
        assert client.get("kept") == b"yes"
        client.close()
    assert not redis_answers(server.url)

"""Users, tokens and the signup grant, on every database engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stargraph.auth import Passwords, token_digest
from stargraph.domain.errors import BadUserInput, Conflict, Forbidden, NotFound, Unauthenticated
from stargraph.domain.ledger import Balance, EntryKind
from stargraph.domain.types import Principal, Role, UserId
from stargraph.store.ledger import TortoiseLedger
from stargraph.store.models import TokenRow, UserRow
from stargraph.store.users import UserService

FAST = Passwords(time_cost=1, memory_cost=1024, parallelism=1)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def users(any_db: str, clock: Clock) -> UserService:
    return UserService(TortoiseLedger(), signup_points=100, token_ttl_s=3600, passwords=FAST,
                       clock=clock)  # fmt: skip


async def test_register_creates_user_account_signup_points_and_token(users: UserService) -> None:
    token, user = await users.register("alice", "correct horse")
    assert (user.username, user.role) == ("alice", Role.USER)
    assert user.created_at.tzinfo is not None
    assert await users.authenticate(token) == Principal(user.id, "alice", Role.USER)
    ledger = TortoiseLedger()
    assert await ledger.balance(user.id) == Balance(100, 0)
    (entry,) = await ledger.entries(user.id, limit=5)
    assert (entry.kind, entry.amount, entry.reason) == (EntryKind.GRANT, 100, "signup")
    assert await ledger.audit(user.id) == []


async def test_the_token_is_stored_only_as_its_digest(users: UserService) -> None:
    token, _ = await users.register("bob_1", "password1")
    row = await TokenRow.get()
    assert row.digest == token_digest(token) != token
    assert len(token) >= 43
    stored = await UserRow.get(username="bob_1")
    assert stored.password_hash.startswith("$argon2id$")
    assert "password1" not in stored.password_hash


async def test_names_are_unique_whatever_the_case(users: UserService) -> None:
    await users.register("Carol", "password1")
    with pytest.raises(Conflict):
        await users.register("carol", "password2")
    assert await UserRow.filter(username_key="carol").count() == 1
    found = await users.find("CAROL")
    assert found is not None and found.username == "Carol"


@pytest.mark.parametrize(
    ("username", "password", "field"),
    [
        ("ab", "password1", "username"),
        ("a" * 33, "password1", "username"),
        ("bad name", "password1", "username"),
        ("名字名字", "password1", "username"),
        ("dave", "short", "password"),
        ("dave", "x" * 129, "password"),
    ],
)
async def test_bad_names_and_passwords_name_their_field(
    users: UserService, username: str, password: str, field: str
) -> None:
    with pytest.raises(BadUserInput) as err:
        await users.register(username, password)
    assert err.value.field == field
    assert await UserRow.all().count() == 0


async def test_login_checks_the_password_and_issues_a_new_token(users: UserService) -> None:
    first, user = await users.register("erin", "s3cret-pass")
    second, same = await users.login("ERIN", "s3cret-pass")
    assert same == user and second != first
    assert (await users.authenticate(second)).user_id == user.id
    wrong = [("erin", "wrong-pass"), ("nobody", "s3cret-pass"), ("erin", "x" * 100_000)]
    for name, password in wrong:
        with pytest.raises(Unauthenticated) as err:
            await users.login(name, password)
        assert err.value.message == "wrong username or password"


async def test_tokens_expire(users: UserService, clock: Clock) -> None:
    token, _ = await users.register("frank", "password1")
    clock.now += timedelta(seconds=3599)
    await users.authenticate(token)
    clock.now += timedelta(seconds=1)
    with pytest.raises(Unauthenticated):
        await users.authenticate(token)


async def test_logout_revokes_only_that_token(users: UserService) -> None:
    token, _ = await users.register("grace", "password1")
    other, _ = await users.login("grace", "password1")
    await users.logout(token)
    await users.logout(token)
    with pytest.raises(Unauthenticated):
        await users.authenticate(token)
    await users.authenticate(other)
    with pytest.raises(Unauthenticated):
        await users.authenticate("not-a-token")


async def test_a_revoked_token_is_refused_here_at_once_and_elsewhere_within_seconds(
    users: UserService, clock: Clock
) -> None:
    token, _ = await users.register("heidi", "password1")
    elsewhere = UserService(TortoiseLedger(), signup_points=100, token_ttl_s=3600,
                            passwords=FAST, clock=clock, token_cache_s=5)  # fmt: skip
    await users.authenticate(token)
    await elsewhere.authenticate(token)  # another API process, which has seen it just now
    await users.logout(token)
    with pytest.raises(Unauthenticated):
        await users.authenticate(token)
    clock.now += timedelta(seconds=5)
    with pytest.raises(Unauthenticated):
        await elsewhere.authenticate(token)


async def test_create_user_with_role_and_points(users: UserService) -> None:
    admin = await users.create_user("root", "password1", role=Role.ADMIN, points=0)
    assert admin.role is Role.ADMIN
    assert await TortoiseLedger().balance(admin.id) == Balance(0, 0)
    assert await TortoiseLedger().entries(admin.id, limit=1) == []
    rich = await users.create_user("rich", "password1", points=5000)
    assert await TortoiseLedger().balance(rich.id) == Balance(5000, 0)
    with pytest.raises(BadUserInput):
        await users.create_user("poor", "password1", points=-1)


async def test_closed_registration(any_db: str) -> None:
    closed = UserService(TortoiseLedger(), 100, 3600, passwords=FAST, open_registration=False)
    with pytest.raises(Forbidden):
        await closed.register("heidi", "password1")
    await closed.create_user("heidi", "password1")  # operators still can


async def test_only_admins_grant(users: UserService) -> None:
    admin = await users.create_user("boss", "password1", role=Role.ADMIN)
    user = await users.create_user("ivan", "password1")
    with pytest.raises(Forbidden):
        await users.grant(user.principal, user.id, 10, "self-service")
    assert await users.grant(admin.principal, user.id, 25, "bonus") == Balance(125, 0)
    (entry, *_) = await TortoiseLedger().entries(user.id, limit=1)
    assert entry.reason == "bonus (by boss)"
    with pytest.raises(NotFound):
        await users.grant(admin.principal, UserId(999999), 10, "ghost")


async def test_a_login_guard_runs_first(any_db: str) -> None:
    seen: list[tuple[str, str | None]] = []

    async def guard(username: str, client: str | None) -> None:
        seen.append((username, client))

    service = UserService(TortoiseLedger(), 0, 60, passwords=FAST, login_guard=guard)
    with pytest.raises(Unauthenticated):
        await service.login("judy", "password1", client="10.0.0.1")
    assert seen == [("judy", "10.0.0.1")]


async def test_an_old_hash_is_upgraded_at_login(any_db: str) -> None:
    old = UserService(TortoiseLedger(), 0, 60, passwords=FAST)
    await old.create_user("kim", "password1")
    stronger = Passwords(time_cost=2, memory_cost=1024, parallelism=1)
    new = UserService(TortoiseLedger(), 0, 60, passwords=stronger)
    await new.login("kim", "password1")
    assert not stronger.needs_rehash((await UserRow.get(username="kim")).password_hash)
    await old.login("kim", "password1")  # hashes carry their parameters

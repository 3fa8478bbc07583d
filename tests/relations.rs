//! Relationships: `#[belongs_to]`, `#[has_many]` (1:N and M:N through a join entity)
//! and referential integrity, over a users / orders / order lines / posts / tags
//! schema, plus the same rules inside `#[storage(per_record, wal)]` collections.
//!
//! Who refers to whom, and what removing the parent does:
//!
//! ```text
//! Order.user_id      -> User   cascade      OrderLine.order_id -> Order  cascade
//! Refund.order_id    -> Order  restrict     Post.author_id     -> User   restrict
//! Post.editor_id     -> User   detach       PostTag.post_id    -> Post   cascade
//! PostTag.tag_id     -> Tag    restrict     Visit.user_id      -> User   check = false
//! Category.parent_id -> Category  cascade (a tree in one collection)
//! ```

#[macro_use]
mod common_pg;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shelf::{Dangling, Entity, Error, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[has_many(orders: Order, key = user_id)]
#[has_many(posts: Post, key = author_id)]
struct User {
    #[id]
    id: String,
    name: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[has_many(lines: OrderLine, key = order_id)]
#[has_many(refunds: Refund, key = order_id)]
struct Order {
    #[id(auto)]
    id: u64,
    #[belongs_to(User, on_delete = cascade)]
    user_id: String,
    total_cents: u64,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct OrderLine {
    #[id(auto)]
    id: u64,
    #[belongs_to(Order, on_delete = cascade)]
    order_id: u64,
    item: String,
}

/// A refund keeps its order (and so the order's user) from being removed.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Refund {
    #[id(auto)]
    id: u64,
    #[belongs_to(Order)]
    order_id: u64,
    cents: u64,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[has_many(tags: Tag, through = PostTag)]
struct Post {
    #[id]
    id: u64,
    #[belongs_to(User)]
    author_id: String,
    #[belongs_to(User, on_delete = detach)]
    editor_id: Option<String>,
    title: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[has_many(posts: Post, through = PostTag)]
struct Tag {
    #[id]
    id: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct PostTag {
    #[id(auto)]
    id: u64,
    #[belongs_to(Post, on_delete = cascade)]
    post_id: u64,
    #[belongs_to(Tag)]
    tag_id: String,
    added_on: String,
}

/// `check = false`: a visit may name a user that does not exist.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Visit {
    #[id(auto)]
    id: u64,
    #[belongs_to(User, check = false)]
    user_id: String,
}

/// A tree in one collection: removing a category removes its subtree.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[has_many(children: Category, key = parent_id)]
struct Category {
    #[id]
    id: u32,
    #[belongs_to(Category, on_delete = cascade)]
    parent_id: Option<u32>,
}

const NEVER: Duration = Duration::from_secs(3600);

fn open(dir: &Path) -> Store {
    registered(Store::builder(dir)).open().unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

fn open_on(backend: &common_pg::Backend) -> Store {
    registered(backend.builder()).open().unwrap_or_else(|e| panic!("open: {e}"))
}

fn registered(builder: shelf::StoreBuilder) -> shelf::StoreBuilder {
    builder
        .register::<User>()
        .register::<Order>()
        .register::<OrderLine>()
        .register::<Refund>()
        .register::<Post>()
        .register::<Tag>()
        .register::<PostTag>()
        .register::<Visit>()
        .register::<Category>()
        .flush_interval(NEVER)
}

fn user(id: &str) -> User {
    User { id: id.into(), name: id.to_uppercase() }
}

fn order(user: &str, total_cents: u64) -> Order {
    Order { id: 0, user_id: user.into(), total_cents }
}

fn line(order: u64, item: &str) -> OrderLine {
    OrderLine { id: 0, order_id: order, item: item.into() }
}

fn post(id: u64, author: &str, editor: Option<&str>) -> Post {
    Post { id, author_id: author.into(), editor_id: editor.map(Into::into), title: format!("post {id}") }
}

fn post_tag(post: u64, tag: &str, day: &str) -> PostTag {
    PostTag { id: 0, post_id: post, tag_id: tag.into(), added_on: day.into() }
}

fn ids<T: Entity>(records: Vec<Arc<T>>) -> Vec<T::Id> {
    records.iter().map(|r| r.id().clone()).collect()
}

/// Every record in the store, for "nothing changed" checks.
#[derive(Debug, PartialEq)]
struct Snapshot {
    users: Vec<User>,
    orders: Vec<Order>,
    lines: Vec<OrderLine>,
    refunds: Vec<Refund>,
    posts: Vec<Post>,
    tags: Vec<Tag>,
    post_tags: Vec<PostTag>,
    visits: Vec<Visit>,
}

fn all<T: Entity + Clone>(store: &Store) -> Vec<T> {
    let mut records: Vec<T> = store.collection::<T>().unwrap().iter().map(|r| (*r).clone()).collect();
    records.sort_by(|a, b| a.id().cmp(b.id()));
    records
}

fn snapshot(store: &Store) -> Snapshot {
    Snapshot {
        users: all(store),
        orders: all(store),
        lines: all(store),
        refunds: all(store),
        posts: all(store),
        tags: all(store),
        post_tags: all(store),
        visits: all(store),
    }
}

/// Records waiting for the next flush, over all collections.
fn dirty(store: &Store) -> usize {
    store.collection::<User>().unwrap().dirty_count()
        + store.collection::<Order>().unwrap().dirty_count()
        + store.collection::<OrderLine>().unwrap().dirty_count()
        + store.collection::<Refund>().unwrap().dirty_count()
        + store.collection::<Post>().unwrap().dirty_count()
        + store.collection::<Tag>().unwrap().dirty_count()
        + store.collection::<PostTag>().unwrap().dirty_count()
        + store.collection::<Visit>().unwrap().dirty_count()
}

/// ada: orders 1 (lines 1, 2) and 2 (line 3); bob: order 3 (line 4).
/// Posts 10 (by ada, edited by bob, tagged rust and db) and 11 (by bob, tagged rust).
fn seed(store: &Store) {
    let users = store.collection::<User>().unwrap();
    let orders = store.collection::<Order>().unwrap();
    let lines = store.collection::<OrderLine>().unwrap();
    let posts = store.collection::<Post>().unwrap();
    let tags = store.collection::<Tag>().unwrap();
    users.insert(user("ada")).unwrap();
    users.insert(user("bob")).unwrap();
    assert_eq!(orders.insert(order("ada", 100)).unwrap(), 1);
    assert_eq!(orders.insert(order("ada", 200)).unwrap(), 2);
    assert_eq!(orders.insert(order("bob", 300)).unwrap(), 3);
    lines.insert(line(1, "pen")).unwrap();
    lines.insert(line(1, "ink")).unwrap();
    lines.insert(line(2, "pad")).unwrap();
    lines.insert(line(3, "cup")).unwrap();
    posts.insert(post(10, "ada", Some("bob"))).unwrap();
    posts.insert(post(11, "bob", None)).unwrap();
    tags.insert(Tag { id: "rust".into() }).unwrap();
    tags.insert(Tag { id: "db".into() }).unwrap();
    let p10 = posts.get(&10).unwrap();
    assert!(p10.link_tags(store, post_tag(10, "rust", "mon")).unwrap());
    assert!(p10.link_tags(store, post_tag(10, "db", "mon")).unwrap());
    assert!(posts.get(&11).unwrap().link_tags(store, post_tag(11, "rust", "tue")).unwrap());
}

/// Every accessor of the seeded schema answers as `seed` left it.
fn assert_seeded_relationships(store: &Store) {
    let users = store.collection::<User>().unwrap();
    let orders = store.collection::<Order>().unwrap();
    let lines = store.collection::<OrderLine>().unwrap();
    let posts = store.collection::<Post>().unwrap();
    let tags = store.collection::<Tag>().unwrap();
    let ada = users.get("ada").unwrap();
    let bob = users.get("bob").unwrap();

    // 1:N, parent to children and back.
    assert_eq!(ids(ada.orders(store).unwrap()), [1, 2]);
    assert_eq!(ids(bob.orders(store).unwrap()), [3]);
    for order in orders.iter() {
        assert_eq!(order.user(store).unwrap().unwrap().id, order.user_id);
    }
    assert_eq!(ids(orders.get(&1).unwrap().lines(store).unwrap()), [1, 2]);
    assert_eq!(ids(orders.get(&2).unwrap().lines(store).unwrap()), [3]);
    assert_eq!(lines.get(&4).unwrap().order(store).unwrap().unwrap().id, 3);
    assert_eq!(ids(ada.posts(store).unwrap()), [10]);
    assert_eq!(ids(bob.posts(store).unwrap()), [11]);
    // The foreign key fields are indexed, with the generated lookups.
    assert_eq!(orders.count_by_user_id("ada"), 2);
    assert_eq!(ids(orders.by_user_id("bob")), [3]);
    assert_eq!(ids(posts.by_editor_id("bob")), [10]);

    // Two keys to the same parent: each accessor follows its own field.
    let p10 = posts.get(&10).unwrap();
    assert_eq!(p10.author(store).unwrap().unwrap().id, "ada");
    assert_eq!(p10.editor(store).unwrap().unwrap().id, "bob");
    assert_eq!(posts.get(&11).unwrap().editor(store).unwrap(), None);

    // M:N from both sides, in id order.
    assert_eq!(ids(p10.tags(store).unwrap()), ["db", "rust"]);
    assert_eq!(ids(posts.get(&11).unwrap().tags(store).unwrap()), ["rust"]);
    assert_eq!(ids(tags.get("rust").unwrap().posts(store).unwrap()), [10, 11]);
    assert_eq!(ids(tags.get("db").unwrap().posts(store).unwrap()), [10]);
}

#[test]
fn restrict_refuses_the_removal_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    seed(&store);
    store.flush().unwrap();
    let users = store.collection::<User>().unwrap();
    let tags = store.collection::<Tag>().unwrap();
    let before = snapshot(&store);

    // ada has orders (cascade) and post 10 (restrict): the cascade is undone too.
    let err = users.remove("ada").unwrap_err();
    match &err {
        Error::ForeignKey { collection, id, child_collection, field, children } => {
            assert_eq!((collection.as_str(), id.as_str()), ("user", "ada"));
            assert_eq!((child_collection.as_str(), field.as_str(), *children), ("post", "author_id", 1));
        }
        other => panic!("expected ForeignKey, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("`post`") && message.contains("1 record(s)"), "{message}");
    assert_eq!(snapshot(&store), before);
    assert_seeded_relationships(&store);

    // The count is the number of blocking children.
    store.collection::<Post>().unwrap().insert(post(12, "ada", None)).unwrap();
    match users.remove("ada") {
        Err(Error::ForeignKey { children: 2, .. }) => {}
        other => panic!("expected ForeignKey with 2 children, got {other:?}"),
    }
    store.collection::<Post>().unwrap().remove(&12).unwrap();
    store.flush().unwrap();
    let before = snapshot(&store);

    // A tag still linked to two posts.
    let err = tags.remove("rust").unwrap_err();
    assert!(
        matches!(&err, Error::ForeignKey { child_collection, children: 2, .. } if child_collection == "post_tag"),
        "{err:?}"
    );
    // The same refusal inside a transaction fails the whole transaction.
    let result = store.transaction(|tx| {
        tx.insert(Tag { id: "new".into() })?;
        tx.remove::<Tag>(&"rust".into())?;
        Ok::<_, Error>(())
    });
    assert!(matches!(result, Err(Error::ForeignKey { .. })), "{result:?}");
    assert_eq!(snapshot(&store), before);

    // Removing the children first, in the same transaction, is fine.
    store
        .transaction(|tx| {
            tx.remove::<Post>(&10)?;
            tx.remove::<User>(&"ada".into())?;
            Ok::<_, Error>(())
        })
        .unwrap();
    assert!(!users.contains("ada"));
    assert_eq!(store.collection::<Order>().unwrap().count_by_user_id("ada"), 0);
    // Removing a parent and writing it again in one transaction keeps its children valid.
    store
        .transaction(|tx| {
            tx.remove::<User>(&"bob".into())?;
            tx.insert(user("bob"))?;
            Ok::<_, Error>(())
        })
        .unwrap();
    assert_eq!(ids(users.get("bob").unwrap().posts(&store).unwrap()), [11]);
    assert!(store.verify().is_empty());
}

#[test]
fn cascade_removes_children_two_levels_deep() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    seed(&store);
    // ada's post would block her removal (restrict); give it to bob.
    store.collection::<Post>().unwrap().update(&10, |p| p.author_id = "bob".into()).unwrap();
    store.flush().unwrap();
    let users = store.collection::<User>().unwrap();
    let orders = store.collection::<Order>().unwrap();
    let lines = store.collection::<OrderLine>().unwrap();

    let removed = users.remove("ada").unwrap();
    assert_eq!(removed.unwrap().id, "ada");
    // ada's orders 1 and 2 and their lines 1, 2, 3 went with her; bob's stayed.
    assert_eq!(ids(orders.all()), [3]);
    assert_eq!(ids(lines.all()), [4]);
    assert_eq!(orders.count_by_user_id("ada"), 0);
    assert_eq!(lines.count_by_order_id(1) + lines.count_by_order_id(2), 0);
    assert_eq!(ids(users.get("bob").unwrap().orders(&store).unwrap()), [3]);
    assert!(store.verify().is_empty());

    // The cascade is persisted: the files are gone after a flush, and stay gone.
    store.flush().unwrap();
    for file in ["user/ada.json", "order/1.json", "order/2.json", "order_line/1.json", "order_line/3.json"] {
        assert!(!dir.path().join(file).exists(), "{file} survived the cascade");
    }
    store.close().unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(ids(store.collection::<Order>().unwrap().all()), [3]);
    assert_eq!(ids(store.collection::<OrderLine>().unwrap().all()), [4]);
    assert!(store.verify().is_empty());

    // A cascade inside a transaction, deeper than the first level: removing an order
    // removes its lines.
    store
        .transaction(|tx| {
            tx.remove::<Order>(&3)?;
            Ok::<_, Error>(())
        })
        .unwrap();
    assert!(store.collection::<OrderLine>().unwrap().is_empty());
}

#[test]
fn a_cascade_that_reaches_a_restricted_child_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    seed(&store);
    store.collection::<Post>().unwrap().update(&10, |p| p.author_id = "bob".into()).unwrap();
    store.collection::<Refund>().unwrap().insert(Refund { id: 0, order_id: 2, cents: 50 }).unwrap();
    store.flush().unwrap();
    let before = snapshot(&store);

    // user -> order 2 (cascade) -> refund (restrict): the whole removal is refused.
    let err = store.collection::<User>().unwrap().remove("ada").unwrap_err();
    match &err {
        Error::ForeignKey { collection, id, child_collection, field, children } => {
            assert_eq!((collection.as_str(), id.as_str()), ("order", "2"));
            assert_eq!((child_collection.as_str(), field.as_str(), *children), ("refund", "order_id", 1));
        }
        other => panic!("expected ForeignKey, got {other:?}"),
    }
    assert_eq!(snapshot(&store), before);
    assert_eq!(ids(store.collection::<Order>().unwrap().get(&2).unwrap().refunds(&store).unwrap()), [1]);
}

#[test]
fn detach_sets_the_option_key_to_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    seed(&store);
    let users = store.collection::<User>().unwrap();
    let posts = store.collection::<Post>().unwrap();
    users.insert(user("cy")).unwrap();
    posts.insert(post(12, "ada", Some("cy"))).unwrap();
    posts.insert(post(13, "bob", Some("cy"))).unwrap();
    store.flush().unwrap();

    users.remove("cy").unwrap();
    for id in [12, 13] {
        let p = posts.get(&id).unwrap();
        assert_eq!(p.editor_id, None);
        assert_eq!(p.editor(&store).unwrap(), None);
        assert_eq!(p.title, format!("post {id}"), "detach changes only the key");
    }
    assert_eq!(posts.count_by_editor_id("cy"), 0);
    // Other posts and their editors are untouched.
    assert_eq!(posts.get(&10).unwrap().editor_id.as_deref(), Some("bob"));
    assert!(store.verify().is_empty());

    // The detached children are written back.
    assert_eq!(posts.dirty_count(), 2);
    store.close().unwrap();
    drop((posts, users, store));
    let store = open(dir.path());
    let posts = store.collection::<Post>().unwrap();
    assert_eq!(posts.get(&12).unwrap().editor_id, None);
    assert_eq!(posts.get(&13).unwrap().editor_id, None);
    assert_eq!(ids(posts.by_editor_id("bob")), [10]);
}

#[test]
fn a_child_whose_parent_does_not_exist_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    seed(&store);
    store.flush().unwrap();
    let orders = store.collection::<Order>().unwrap();
    let posts = store.collection::<Post>().unwrap();
    let before = snapshot(&store);

    // Insert.
    let err = orders.insert(order("nobody", 1)).unwrap_err();
    match &err {
        Error::MissingParent { collection, field, parent_collection, parent_id, .. } => {
            assert_eq!(
                (collection.as_str(), field.as_str(), parent_collection.as_str(), parent_id.as_str()),
                ("order", "user_id", "user", "\"nobody\"")
            );
        }
        other => panic!("expected MissingParent, got {other:?}"),
    }
    assert!(err.to_string().contains("nobody"), "{err}");
    assert_eq!(snapshot(&store), before);
    // Upsert, and an insert at the second level.
    assert!(matches!(
        orders.upsert(Order { id: 1, user_id: "nobody".into(), total_cents: 1 }),
        Err(Error::MissingParent { .. })
    ));
    let lines = store.collection::<OrderLine>().unwrap();
    assert!(matches!(lines.insert(line(99, "ghost")), Err(Error::MissingParent { .. })));
    // An Option key: Some(missing) is refused, None is fine.
    assert!(matches!(posts.insert(post(20, "ada", Some("nobody"))), Err(Error::MissingParent { .. })));
    assert_eq!(snapshot(&store), before);

    // Update: the record and the index stay as they were.
    let err = orders.update(&1, |o| o.user_id = "nobody".into()).unwrap_err();
    assert!(matches!(&err, Error::MissingParent { id, .. } if id == "1"), "{err:?}");
    assert!(matches!(posts.update(&10, |p| p.editor_id = Some("nobody".into())), Err(Error::MissingParent { .. })));
    assert_eq!(snapshot(&store), before);
    assert_eq!(orders.count_by_user_id("nobody"), 0);
    assert_seeded_relationships(&store);

    // In a transaction: the parent written in the same transaction is refused with it.
    let result = store.transaction(|tx| {
        tx.insert(user("new"))?;
        tx.insert(order("nobody", 1))?;
        Ok::<_, Error>(())
    });
    assert!(matches!(result, Err(Error::MissingParent { .. })), "{result:?}");
    // A parent removed earlier in the transaction that then writes a child of it.
    let result = store.transaction(|tx| {
        tx.remove::<PostTag>(&2)?;
        tx.remove::<Tag>(&"db".into())?;
        tx.insert(post_tag(11, "db", "wed"))?;
        Ok::<_, Error>(())
    });
    assert!(result.is_err(), "a child of a removed parent was committed: {result:?}");
    assert_eq!(snapshot(&store), before);

    // Linking to a tag that does not exist.
    let p10 = posts.get(&10).unwrap();
    assert!(matches!(p10.link_tags(&store, post_tag(10, "nope", "wed")), Err(Error::MissingParent { .. })));
    assert_eq!(snapshot(&store), before);

    // None references nothing, and is not checked.
    posts.insert(post(20, "ada", None)).unwrap();
    assert!(store.verify().is_empty());
}

/// A refused write leaves no dirty mark either: the next flush has nothing to do.
#[test]
fn an_integrity_error_leaves_nothing_dirty() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    seed(&store);
    store.flush().unwrap();
    assert_eq!(dirty(&store), 0);

    let orders = store.collection::<Order>().unwrap();
    assert!(matches!(orders.insert(order("nobody", 1)), Err(Error::MissingParent { .. })));
    assert_eq!(dirty(&store), 0, "after a refused insert");
    assert!(matches!(orders.update(&1, |o| o.user_id = "nobody".into()), Err(Error::MissingParent { .. })));
    assert_eq!(dirty(&store), 0, "after a refused update");
    // Restrict, after cascading into ada's orders and lines.
    assert!(matches!(store.collection::<User>().unwrap().remove("ada"), Err(Error::ForeignKey { .. })));
    assert_eq!(dirty(&store), 0, "after a refused removal");
    assert_eq!(store.flush().unwrap().records, 0);
}

/// Issue 20: a `check = false` key does not hold its parent either. Its default
/// `on_delete` is `ignore`: removing the parent leaves the children as they are.

#[test]
fn relationships_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    seed(&store);
    store.close().unwrap();
    drop(store);

    let store = open(dir.path());
    assert_seeded_relationships(&store);
    assert!(store.verify().is_empty());
    store.close().unwrap();
    drop(store);

    // Without the index files (rebuilt from the records on open).
    for collection in ["order", "order_line", "post", "post_tag"] {
        std::fs::remove_dir_all(dir.path().join(collection).join("indices")).unwrap();
    }
    let store = open(dir.path());
    assert_seeded_relationships(&store);

    // Integrity is enforced after reopen as before.
    assert!(matches!(store.collection::<User>().unwrap().remove("ada"), Err(Error::ForeignKey { .. })));
    assert!(matches!(
        store.collection::<Order>().unwrap().insert(order("nobody", 1)),
        Err(Error::MissingParent { .. })
    ));
    let p10 = store.collection::<Post>().unwrap().get(&10).unwrap();
    assert!(!p10.link_tags(&store, post_tag(10, "rust", "sun")).unwrap());
    store.collection::<Post>().unwrap().remove(&10).unwrap();
    assert_eq!(store.collection::<PostTag>().unwrap().len(), 1, "post 10's join rows cascaded");
    store.collection::<User>().unwrap().remove("ada").unwrap();
    assert_eq!(ids(store.collection::<Order>().unwrap().all()), [3]);
    assert_eq!(ids(store.collection::<OrderLine>().unwrap().all()), [4]);
    assert!(store.verify().is_empty());
}

#[test]
fn many_to_many_link_and_unlink_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    seed(&store);
    let posts = store.collection::<Post>().unwrap();
    let tags = store.collection::<Tag>().unwrap();
    let post_tags = store.collection::<PostTag>().unwrap();
    tags.insert(Tag { id: "new".into() }).unwrap();
    let p11 = posts.get(&11).unwrap();

    assert!(p11.link_tags(&store, post_tag(11, "new", "mon")).unwrap());
    let rows = post_tags.len();
    // The pair is linked already: nothing is inserted, the first row stays.
    assert!(!p11.link_tags(&store, post_tag(11, "new", "tue")).unwrap());
    assert_eq!(post_tags.len(), rows);
    let pair: Vec<_> = post_tags.by_post_id(11).into_iter().filter(|r| r.tag_id == "new").collect();
    assert_eq!(pair.len(), 1);
    assert_eq!(pair[0].added_on, "mon");
    assert_eq!(ids(p11.tags(&store).unwrap()), ["new", "rust"]);
    assert_eq!(ids(tags.get("new").unwrap().posts(&store).unwrap()), [11]);

    // A row that does not name this post is refused.
    let err = p11.link_tags(&store, post_tag(10, "new", "mon")).unwrap_err();
    assert!(matches!(&err, Error::InvalidLink { collection, .. } if collection == "post_tag"), "{err:?}");
    assert_eq!(post_tags.len(), rows);

    // Unlink removes the pair's rows and nothing else; a second unlink finds none.
    assert_eq!(p11.unlink_tags(&store, &"new".into()).unwrap(), 1);
    assert_eq!(p11.unlink_tags(&store, &"new".into()).unwrap(), 0);
    assert_eq!(post_tags.len(), rows - 1);
    assert_eq!(ids(p11.tags(&store).unwrap()), ["rust"]);
    assert!(tags.get("new").unwrap().posts(&store).unwrap().is_empty());
    assert_eq!(ids(posts.get(&10).unwrap().tags(&store).unwrap()), ["db", "rust"]);
    // Unlinking a pair that was never linked, or a tag that does not exist.
    assert_eq!(p11.unlink_tags(&store, &"db".into()).unwrap(), 0);
    assert_eq!(p11.unlink_tags(&store, &"nope".into()).unwrap(), 0);

    // A row written directly cannot duplicate a pair either: the join entity has an
    // implied unique index on its two keys, by every path (insert, upsert of another
    // id, a transaction).
    let first = post_tags.insert(post_tag(11, "db", "x")).unwrap();
    let rows = post_tags.len();
    match post_tags.insert(post_tag(11, "db", "y")) {
        Err(Error::UniqueViolation { collection, index, existing_id, .. }) => {
            assert_eq!(collection, "post_tag");
            assert_eq!(index, "post_id_and_tag_id");
            assert_eq!(existing_id, first.to_string());
        }
        other => panic!("a second identical join row was not refused: {other:?}"),
    }
    let mut dup = post_tag(11, "db", "z");
    dup.id = 999;
    assert!(matches!(post_tags.upsert(dup), Err(Error::UniqueViolation { .. })));
    let in_tx: Result<(), Error> = store.transaction(|tx| tx.insert(post_tag(11, "db", "t")).map(drop));
    assert!(matches!(in_tx, Err(Error::UniqueViolation { .. })), "{in_tx:?}");
    assert_eq!(post_tags.len(), rows);
    // The same tag on another post, and another tag on this post, are fine.
    tags.insert(Tag { id: "go".into() }).unwrap();
    post_tags.insert(post_tag(11, "go", "x")).unwrap();
    assert_eq!(ids(p11.tags(&store).unwrap()), ["db", "go", "rust"]);
    assert_eq!(ids(tags.get("db").unwrap().posts(&store).unwrap()), [10, 11]);
    assert_eq!(p11.unlink_tags(&store, &"db".into()).unwrap(), 1);
    assert_eq!(p11.unlink_tags(&store, &"go".into()).unwrap(), 1);
    assert_eq!(ids(p11.tags(&store).unwrap()), ["rust"]);
    // Unlinked, the pair can be linked again.
    assert!(p11.link_tags(&store, post_tag(11, "go", "y")).unwrap());
    assert_eq!(p11.unlink_tags(&store, &"go".into()).unwrap(), 1);

    // Once unlinked, the tag can be removed (restrict no longer applies).
    assert!(matches!(tags.remove("db"), Err(Error::ForeignKey { children: 1, .. })));
    assert_eq!(posts.get(&10).unwrap().unlink_tags(&store, &"db".into()).unwrap(), 1);
    tags.remove("db").unwrap();
    assert!(store.verify().is_empty());
}

/// `link_*` / `unlink_*` inside a transaction: part of it (the transaction sees the
/// links it made, other readers do not until it commits), and undone with it.
#[test]
fn link_and_unlink_inside_a_transaction_commit_or_roll_back_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    seed(&store);
    let post_tags = store.collection::<PostTag>().unwrap();
    let before = snapshot(&store);

    // A new post, a new tag and their link, all in one transaction that fails
    // after: nothing of it is applied.
    let failed: Result<(), Error> = store.transaction(|tx| {
        tx.insert(post(12, "ada", None))?;
        tx.insert(Tag { id: "go".into() })?;
        let p12 = tx.get::<Post>(&12).unwrap();
        assert!(p12.link_tags(&mut *tx, post_tag(12, "go", "mon"))?);
        assert!(!p12.link_tags(&mut *tx, post_tag(12, "go", "tue"))?, "a pair is linked once");
        assert_eq!(ids(p12.tags(&*tx)?), ["go"]);
        assert!(store.collection::<Post>().unwrap().get(&12).is_none(), "not visible outside yet");
        Err(Error::InvalidLink { collection: "test".into(), message: "roll back".into() })
    });
    assert!(failed.is_err());
    assert_eq!(snapshot(&store), before, "the failed transaction applied nothing");

    // The same, committed; then unlink and link in another transaction.
    store
        .transaction(|tx| {
            tx.insert(post(12, "ada", None))?;
            tx.insert(Tag { id: "go".into() })?;
            let p12 = tx.get::<Post>(&12).unwrap();
            assert!(p12.link_tags(&mut *tx, post_tag(12, "go", "mon"))?);
            p12.link_tags(tx, post_tag(12, "rust", "mon")).map(drop)
        })
        .unwrap();
    let p12 = store.collection::<Post>().unwrap().get(&12).unwrap();
    assert_eq!(ids(p12.tags(&store).unwrap()), ["go", "rust"]);
    store
        .transaction(|tx| {
            assert_eq!(p12.unlink_tags(&mut *tx, &"go".into())?, 1);
            assert_eq!(p12.unlink_tags(&mut *tx, &"go".into())?, 0, "the transaction sees its removal");
            assert_eq!(ids(p12.tags(&*tx)?), ["rust"]);
            tx.remove::<Tag>(&"go".into()).map(drop)
        })
        .unwrap();
    assert_eq!(ids(p12.tags(&store).unwrap()), ["rust"]);
    assert!(store.collection::<Tag>().unwrap().get("go").is_none());
    assert_eq!(post_tags.by_post_id(12).len(), 1);
    assert!(store.verify().is_empty());
}

/// Two keys to different parents, but no `through` relationship uses them: a user
/// may comment on a post twice, so no unique index is implied.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Comment {
    #[id(auto)]
    id: u64,
    #[belongs_to(Post, on_delete = cascade)]
    post_id: u64,
    #[belongs_to(User)]
    author_id: String,
}

#[test]
fn only_through_pairs_get_an_implied_unique_index() {
    use shelf::__private::EntityInternals;
    // PostTag: its two key indices and the implied pair index.
    assert_eq!(PostTag::__indices().len(), 3);
    assert_eq!(Comment::__indices().len(), 2);

    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .register::<User>()
        .register::<Post>()
        .register::<Tag>()
        .register::<PostTag>()
        .register::<Comment>()
        .flush_interval(NEVER)
        .open()
        .unwrap();
    store.collection::<User>().unwrap().insert(user("ada")).unwrap();
    store.collection::<Post>().unwrap().insert(post(1, "ada", None)).unwrap();
    let comments = store.collection::<Comment>().unwrap();
    comments.insert(Comment { id: 0, post_id: 1, author_id: "ada".into() }).unwrap();
    comments.insert(Comment { id: 0, post_id: 1, author_id: "ada".into() }).unwrap();
    assert_eq!(comments.by_post_id(1).len(), 2);
}

/// Rewrites one field of a per-record JSON file, as a person with an editor would.
fn edit_record(path: &Path, field: &str, value: serde_json::Value) {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut json: serde_json::Value = serde_json::from_slice(&text).unwrap();
    json[field] = value;
    std::fs::write(path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
}

#[test]
fn verify_reports_dangling_references_made_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    seed(&store);
    assert_eq!(store.verify(), Vec::<Dangling>::new());
    store.close().unwrap();
    drop(store);

    // While closed: order 3 is edited to name a user that does not exist, and the
    // file of tag "db" is deleted from under post 10's join row (post_tag 2).
    edit_record(&dir.path().join("order").join("3.json"), "user_id", "ghost".into());
    std::fs::remove_file(dir.path().join("tag").join("db.json")).unwrap();

    let store = open(dir.path());
    let mut dangling = store.verify();
    dangling.sort_by(|a, b| (&a.collection, &a.id).cmp(&(&b.collection, &b.id)));
    assert_eq!(
        dangling,
        [
            Dangling {
                collection: "order".into(),
                id: "3".into(),
                field: "user_id".into(),
                parent_collection: "user".into(),
                parent_id: "\"ghost\"".into(),
            },
            Dangling {
                collection: "post_tag".into(),
                id: "2".into(),
                field: "tag_id".into(),
                parent_collection: "tag".into(),
                parent_id: "\"db\"".into(),
            },
        ]
    );
    // The store serves as the files say: the accessor finds no parent, the index
    // follows the edited file.
    let orders = store.collection::<Order>().unwrap();
    assert_eq!(orders.get(&3).unwrap().user(&store).unwrap(), None);
    assert!(store.collection::<User>().unwrap().get("bob").unwrap().orders(&store).unwrap().is_empty());
    assert_eq!(ids(orders.by_user_id("ghost")), [3]);
    assert_eq!(ids(store.collection::<Post>().unwrap().get(&10).unwrap().tags(&store).unwrap()), ["rust"]);

    // Repairing the references empties the report.
    orders.update(&3, |o| o.user_id = "bob".into()).unwrap();
    store.collection::<PostTag>().unwrap().remove(&2).unwrap();
    assert_eq!(store.verify(), Vec::<Dangling>::new());
}

// --- The same rules in `#[storage(per_record, wal)]` collections -----------------

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
#[has_many(books: Book, key = author_id)]
struct Author {
    #[id]
    id: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
#[has_many(loans: Loan, key = book_id)]
#[has_many(genres: Genre, through = BookGenre)]
struct Book {
    #[id(auto)]
    id: u64,
    #[belongs_to(Author, on_delete = cascade)]
    author_id: String,
    #[belongs_to(Author, on_delete = detach)]
    translator_id: Option<String>,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
struct Loan {
    #[id(auto)]
    id: u64,
    #[belongs_to(Book)]
    book_id: u64,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
#[has_many(books: Book, through = BookGenre)]
struct Genre {
    #[id]
    id: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
struct BookGenre {
    #[id(auto)]
    id: u64,
    #[belongs_to(Book, on_delete = cascade)]
    book_id: u64,
    #[belongs_to(Genre)]
    genre_id: String,
}

fn open_library(dir: &Path) -> Store {
    Store::builder(dir)
        .register::<Author>()
        .register::<Book>()
        .register::<Loan>()
        .register::<Genre>()
        .register::<BookGenre>()
        .flush_interval(NEVER)
        .open()
        .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

/// Copies a data directory as a crash at this instant would leave it.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn relationships_in_wal_collections() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_library(dir.path());
    let authors = store.collection::<Author>().unwrap();
    let books = store.collection::<Book>().unwrap();
    let loans = store.collection::<Loan>().unwrap();
    let genres = store.collection::<Genre>().unwrap();
    authors.insert(Author { id: "leguin".into() }).unwrap();
    authors.insert(Author { id: "tr".into() }).unwrap();
    let b1 = books.insert(Book { id: 0, author_id: "leguin".into(), translator_id: Some("tr".into()) }).unwrap();
    let b2 = books.insert(Book { id: 0, author_id: "leguin".into(), translator_id: None }).unwrap();
    let b3 = books.insert(Book { id: 0, author_id: "tr".into(), translator_id: None }).unwrap();
    genres.insert(Genre { id: "sf".into() }).unwrap();
    let book1 = books.get(&b1).unwrap();
    assert!(book1.link_genres(&store, BookGenre { id: 0, book_id: b1, genre_id: "sf".into() }).unwrap());
    assert!(!book1.link_genres(&store, BookGenre { id: 0, book_id: b1, genre_id: "sf".into() }).unwrap());
    loans.insert(Loan { id: 0, book_id: b3 }).unwrap();

    // Accessors both ways.
    let le_guin = authors.get("leguin").unwrap();
    assert_eq!(ids(le_guin.books(&store).unwrap()), [b1, b2]);
    assert_eq!(book1.author(&store).unwrap().unwrap().id, "leguin");
    assert_eq!(book1.translator(&store).unwrap().unwrap().id, "tr");
    assert_eq!(ids(book1.genres(&store).unwrap()), ["sf"]);
    assert_eq!(ids(genres.get("sf").unwrap().books(&store).unwrap()), [b1]);

    // Integrity: a missing parent and a restricted removal change nothing.
    assert!(matches!(
        books.insert(Book { id: 0, author_id: "nobody".into(), translator_id: None }),
        Err(Error::MissingParent { .. })
    ));
    assert!(matches!(books.update(&b2, |b| b.translator_id = Some("nobody".into())), Err(Error::MissingParent { .. })));
    let err = authors.remove("tr").unwrap_err();
    match &err {
        Error::ForeignKey { collection, child_collection, children, .. } => {
            assert_eq!((collection.as_str(), child_collection.as_str(), *children), ("book", "loan", 1));
        }
        other => panic!("expected ForeignKey, got {other:?}"),
    }
    assert_eq!(ids(books.all()), [b1, b2, b3]);
    assert_eq!(books.get(&b1).unwrap().translator_id.as_deref(), Some("tr"));

    // Cascade two levels (author -> book -> book_genre) and nothing is flushed: the
    // only record of the removals is the WAL. A crash now must replay them whole.
    store.flush().unwrap();
    authors.remove("leguin").unwrap();
    assert_eq!(ids(books.all()), [b3]);
    assert!(store.collection::<BookGenre>().unwrap().is_empty());
    loans.remove(&1).unwrap();
    authors.remove("tr").unwrap();
    assert!(books.is_empty());
    let crashed = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), crashed.path());
    assert!(crashed.path().join("book").join(format!("{b1}.json")).exists(), "the test needs unflushed removals");

    let replayed = open_library(crashed.path());
    assert!(replayed.recovery_report().wal_records_replayed > 0);
    assert!(replayed.collection::<Author>().unwrap().is_empty());
    assert!(replayed.collection::<Book>().unwrap().is_empty());
    assert!(replayed.collection::<BookGenre>().unwrap().is_empty());
    assert!(replayed.verify().is_empty());
    assert_eq!(replayed.collection::<Genre>().unwrap().len(), 1);
}

#[test]
fn wal_relationships_survive_reopen_and_detach() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_library(dir.path());
    let authors = store.collection::<Author>().unwrap();
    let books = store.collection::<Book>().unwrap();
    authors.insert(Author { id: "a".into() }).unwrap();
    authors.insert(Author { id: "t".into() }).unwrap();
    let b = books.insert(Book { id: 0, author_id: "a".into(), translator_id: Some("t".into()) }).unwrap();
    authors.remove("t").unwrap();
    assert_eq!(books.get(&b).unwrap().translator_id, None);
    // Crash before any flush: the detach is replayed from the WAL.
    let crashed = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), crashed.path());
    let replayed = open_library(crashed.path());
    let book = replayed.collection::<Book>().unwrap().get(&b).unwrap();
    assert_eq!(book.translator_id, None);
    assert_eq!(book.author(&replayed).unwrap().unwrap().id, "a");
    assert_eq!(ids(replayed.collection::<Author>().unwrap().get("a").unwrap().books(&replayed).unwrap()), [b]);
    assert!(replayed.verify().is_empty());
    drop(replayed);

    // A clean reopen.
    store.close().unwrap();
    drop((authors, books, store));
    let store = open_library(dir.path());
    let a = store.collection::<Author>().unwrap().get("a").unwrap();
    assert_eq!(ids(a.books(&store).unwrap()), [b]);
    assert!(matches!(store.collection::<Author>().unwrap().remove("nobody"), Ok(None)));
    store.collection::<Author>().unwrap().remove("a").unwrap();
    assert!(store.collection::<Book>().unwrap().is_empty());
}

// The API tests above that mean the same on every backend run on each: files
// and PostgreSQL (common_pg::on_each_backend).
on_each_backend! {
    fn accessors_in_both_directions(b) {
        let store = open_on(&b);
        seed(&store);
        assert_seeded_relationships(&store);

        // A parent without children, and a child record that is not linked.
        let users = store.collection::<User>().unwrap();
        users.insert(user("cy")).unwrap();
        let cy = users.get("cy").unwrap();
        assert!(cy.orders(&store).unwrap().is_empty());
        assert!(cy.posts(&store).unwrap().is_empty());
        let tags = store.collection::<Tag>().unwrap();
        tags.insert(Tag { id: "empty".into() }).unwrap();
        assert!(tags.get("empty").unwrap().posts(&store).unwrap().is_empty());

        // The join entity keeps its own fields.
        let rows = store.collection::<PostTag>().unwrap().by_post_id(10);
        assert_eq!(rows.iter().map(|r| r.added_on.as_str()).collect::<Vec<_>>(), ["mon", "mon"]);

        // Moving a child moves it between parents.
        store.collection::<Order>().unwrap().update(&2, |o| o.user_id = "cy".into()).unwrap();
        assert_eq!(ids(users.get("ada").unwrap().orders(&store).unwrap()), [1]);
        assert_eq!(ids(cy.orders(&store).unwrap()), [2]);
    }

    fn cascade_follows_a_self_reference_down_a_tree_and_around_a_cycle(b) {
        let store = open_on(&b);
        let categories = store.collection::<Category>().unwrap();
        let node = |id: u32, parent: Option<u32>| Category { id, parent_id: parent };
        // 1 -> (2 -> 4 -> 6), 3;  5 is another root.
        for (id, parent) in [(1, None), (2, Some(1)), (3, Some(1)), (4, Some(2)), (5, None), (6, Some(4))] {
            categories.insert(node(id, parent)).unwrap();
        }
        let one = categories.get(&1).unwrap();
        assert_eq!(ids(one.children(&store).unwrap()), [2, 3]);
        assert_eq!(categories.get(&4).unwrap().parent(&store).unwrap().unwrap().id, 2);
        assert_eq!(one.parent(&store).unwrap(), None);

        categories.remove(&2).unwrap();
        assert_eq!(ids(categories.all()), [1, 3, 5]);
        categories.remove(&1).unwrap();
        assert_eq!(ids(categories.all()), [5]);

        // A cycle (7 -> 8 -> 7, written together) and a self-loop end too.
        store
            .transaction(|tx| {
                tx.insert(node(7, Some(8)))?;
                tx.insert(node(8, Some(7)))?;
                tx.insert(node(9, Some(9)))?;
                Ok::<_, Error>(())
            })
            .unwrap();
        assert_eq!(ids(categories.get(&7).unwrap().children(&store).unwrap()), [8]);
        categories.remove(&7).unwrap();
        categories.remove(&9).unwrap();
        assert_eq!(ids(categories.all()), [5]);
        assert!(store.verify().is_empty());
    }

    fn check_false_allows_a_missing_parent(b) {
        let store = open_on(&b);
        let users = store.collection::<User>().unwrap();
        let visits = store.collection::<Visit>().unwrap();
        users.insert(user("ada")).unwrap();

        let id = visits.insert(Visit { id: 0, user_id: "ghost".into() }).unwrap();
        assert_eq!(visits.get(&id).unwrap().user(&store).unwrap(), None);
        visits.update(&id, |v| v.user_id = "other ghost".into()).unwrap();
        visits.update(&id, |v| v.user_id = "ada".into()).unwrap();
        assert_eq!(visits.get(&id).unwrap().user(&store).unwrap().unwrap().id, "ada");
        let second = visits.insert(Visit { id: 0, user_id: "ghost".into() }).unwrap();
        assert_eq!(ids(visits.by_user_id("ghost")), [second]);
        // A reference the schema opted out of checking is not reported as dangling,
        // unless asked for.
        assert!(store.verify().is_empty(), "{:?}", store.verify());
        let all = store.verify_all();
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0].collection, "visit");
    }

    fn check_false_keys_do_not_block_removing_the_parent(b) {
        let store = open_on(&b);
        let users = store.collection::<User>().unwrap();
        let visits = store.collection::<Visit>().unwrap();
        users.insert(user("ada")).unwrap();
        let id = visits.insert(Visit { id: 0, user_id: "ada".into() }).unwrap();
        assert!(users.remove("ada").unwrap().is_some(), "the removal was refused");
        let visit = visits.get(&id).expect("the child is left alone");
        assert_eq!(visit.user_id, "ada");
        assert_eq!(visit.user(&store).unwrap(), None);
    }

    fn a_parent_written_in_the_same_transaction_as_its_child(b) {
        let store = open_on(&b);
        // The child first, then its parent, then a grandchild and a link.
        store
            .transaction(|tx| {
                let order = tx.insert(order("ada", 100))?;
                tx.insert(user("ada"))?;
                tx.insert(line(order, "pen"))?;
                tx.insert(post(10, "ada", Some("ada")))?;
                tx.insert(Tag { id: "rust".into() })?;
                tx.insert(post_tag(10, "rust", "mon"))?;
                Ok::<_, Error>(())
            })
            .unwrap();
        let ada = store.collection::<User>().unwrap().get("ada").unwrap();
        assert_eq!(ids(ada.orders(&store).unwrap()), [1]);
        assert_eq!(ids(store.collection::<Order>().unwrap().get(&1).unwrap().lines(&store).unwrap()), [1]);
        assert_eq!(ids(store.collection::<Post>().unwrap().get(&10).unwrap().tags(&store).unwrap()), ["rust"]);
        assert!(store.verify().is_empty());
    }

    fn accessors_in_a_transaction_see_its_own_writes(b) {
        let store = open_on(&b);
        seed(&store);
        let users = store.collection::<User>().unwrap();
        let ada = users.get("ada").unwrap();
        let bob = users.get("bob").unwrap();
        let p11 = store.collection::<Post>().unwrap().get(&11).unwrap();

        let result: Result<(), Error> = store.transaction(|tx| {
            let new = tx.insert(order("ada", 400))?;
            assert_eq!(ids(ada.orders(&*tx)?), [1, 2, new]);
            // The store's own view is the committed state.
            assert_eq!(ids(ada.orders(&store)?), [1, 2]);
            tx.remove::<Order>(&1)?;
            tx.update::<Order>(&2, |o| o.user_id = "bob".into())?;
            assert_eq!(ids(ada.orders(&*tx)?), [new]);
            assert_eq!(ids(bob.orders(&*tx)?), [2, 3]);

            // A parent written in the transaction is found from its child, and back.
            tx.insert(user("cy"))?;
            let cys = tx.insert(order("cy", 1))?;
            let cy_order = tx.get::<Order>(&cys).unwrap();
            assert_eq!(cy_order.user(&*tx)?.unwrap().name, "CY");
            assert_eq!(cy_order.user(&store)?, None);
            assert_eq!(ids(tx.get::<User>(&"cy".into()).unwrap().orders(&*tx)?), [cys]);

            // M:N: a join row written in the transaction, and one removed.
            tx.insert(Tag { id: "new".into() })?;
            tx.insert(post_tag(11, "new", "wed"))?;
            assert_eq!(ids(p11.tags(&*tx)?), ["new", "rust"]);
            let rust_row = tx.get::<PostTag>(&3).unwrap();
            assert_eq!((rust_row.post_id, rust_row.tag_id.as_str()), (11, "rust"));
            tx.remove::<PostTag>(&3)?;
            assert_eq!(ids(p11.tags(&*tx)?), ["new"]);
            assert_eq!(ids(tx.get::<Tag>(&"rust".into()).unwrap().posts(&*tx)?), [10]);
            assert_eq!(ids(p11.tags(&store)?), ["rust"]);

            // Abandon the transaction: nothing above is applied.
            Err(Error::NotFound { collection: "test".into(), id: "rollback".into() })
        });
        assert!(matches!(result, Err(Error::NotFound { .. })));
        assert_seeded_relationships(&store);
        assert!(!users.contains("cy"));
    }
}

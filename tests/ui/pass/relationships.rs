#![deny(warnings)]

// Every relationship form and the accessors it generates, type-checked (nothing here
// runs).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shelf::{Dangling, Entity, Error, Store};

mod accounts {
    use serde::{Deserialize, Serialize};
    use shelf::Entity;

    /// A parent in another module, named by path.
    #[derive(Entity, Serialize, Deserialize, Clone, Debug)]
    pub struct Account {
        #[id]
        pub id: u32,
    }
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[storage(per_record, wal)]
#[has_many(orders: Order, key = user_id)]
#[has_many(reviews: Order, key = reviewer_id)]
struct User {
    #[id]
    id: String,
    #[belongs_to(accounts::Account, on_delete = cascade)]
    account_id: u32,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[has_many(lines: OrderLine, key = order_id)]
struct Order {
    #[id(auto)]
    id: u64,
    #[belongs_to(User, on_delete = cascade)]
    user_id: String,
    // Two keys to the same parent, each with its own accessor.
    #[belongs_to(User, on_delete = detach)]
    reviewer_id: Option<String>,
    total_cents: u64,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct OrderLine {
    #[id(auto)]
    id: u64,
    #[belongs_to(Order, on_delete = cascade, check = true)]
    order_id: u64,
    // An explicit #[index] on a foreign key takes the place of the implied one;
    // `check = false` lets it name a user that does not exist.
    #[index]
    #[belongs_to(User, check = false, on_delete = restrict)]
    packer_id: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[has_many(tags: Tag, through = PostTag)]
struct Post {
    #[id]
    id: u64,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[has_many(posts: Post, through = PostTag)]
struct Tag {
    #[id]
    id: String,
}

/// The join entity, with a field of its own.
#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct PostTag {
    #[id(auto)]
    id: u64,
    #[belongs_to(Post, on_delete = cascade)]
    post_id: u64,
    #[belongs_to(Tag)]
    tag_id: String,
    added_on: String,
}

/// A tree: a self-reference.
#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[has_many(children: Category, key = parent_id)]
struct Category {
    #[id]
    id: u32,
    #[belongs_to(Category, on_delete = cascade)]
    parent_id: Option<u32>,
}

fn _accessors(store: &Store, user: &User, order: &Order, line: &OrderLine) -> shelf::Result<()> {
    let _: Vec<Arc<Order>> = user.orders(store)?;
    let _: Vec<Arc<Order>> = user.reviews(store)?;
    let _: Option<Arc<accounts::Account>> = user.account(store)?;
    let _: Option<Arc<User>> = order.user(store)?;
    let _: Option<Arc<User>> = order.reviewer(store)?;
    let _: Vec<Arc<OrderLine>> = order.lines(store)?;
    let _: Option<Arc<Order>> = line.order(store)?;
    let _: Option<Arc<User>> = line.packer(store)?;
    // Foreign keys are indexed, with the usual lookups.
    let orders = store.collection::<Order>()?;
    let _: Vec<Arc<Order>> = orders.by_user_id("ada");
    let _: usize = orders.count_by_reviewer_id("ada");
    let _: Vec<Arc<OrderLine>> = store.collection::<OrderLine>()?.by_order_id(1);
    let _: Vec<Arc<OrderLine>> = store.collection::<OrderLine>()?.by_packer_id("ada");
    Ok(())
}

fn _many_to_many(store: &Store, post: &Post, tag: &Tag) -> shelf::Result<()> {
    let _: Vec<Arc<Tag>> = post.tags(store)?;
    let _: Vec<Arc<Post>> = tag.posts(store)?;
    let row = PostTag { id: 0, post_id: post.id, tag_id: tag.id.clone(), added_on: "mon".into() };
    let _: bool = post.link_tags(store, row)?;
    let _: usize = post.unlink_tags(store, &tag.id)?;
    let row = PostTag { id: 0, post_id: post.id, tag_id: tag.id.clone(), added_on: "tue".into() };
    let _: bool = tag.link_posts(store, row)?;
    let _: usize = tag.unlink_posts(store, &post.id)?;
    Ok(())
}

fn _in_a_transaction(store: &Store, user: &User, post: &Post) -> shelf::Result<()> {
    store.transaction(|tx| {
        let id = tx.insert(Order { id: 0, user_id: user.id.clone(), reviewer_id: None, total_cents: 1 })?;
        let _: Vec<Arc<Order>> = user.orders(&*tx)?;
        let _: Vec<Arc<Tag>> = post.tags(&*tx)?;
        if let Some(order) = tx.get::<Order>(&id) {
            let _: Option<Arc<User>> = order.user(&*tx)?;
        }
        Ok(())
    })
}

fn _tree(store: &Store, node: &Category) -> shelf::Result<()> {
    let _: Vec<Arc<Category>> = node.children(store)?;
    let _: Option<Arc<Category>> = node.parent(store)?;
    Ok(())
}

fn _errors(error: &Error) -> &'static str {
    match error {
        Error::ForeignKey { children, .. } if *children > 1 => "blocked by children",
        Error::ForeignKey { .. } => "blocked by a child",
        Error::MissingParent { .. } => "no parent",
        Error::InvalidLink { .. } => "bad link",
        _ => "other",
    }
}

fn _verify(store: &Store) -> usize {
    let dangling: Vec<Dangling> = store.verify();
    dangling.iter().filter(|d| d.parent_collection == "user").count()
}

fn main() {}

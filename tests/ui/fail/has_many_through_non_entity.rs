use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[has_many(tags: Tag, through = PostTag)]
struct Post {
    #[id]
    id: u64,
}

// Not an entity: no #[derive(Entity)].
#[derive(Serialize, Deserialize, Clone, Debug)]
struct Tag {
    id: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct PostTag {
    #[id(auto)]
    id: u64,
    #[belongs_to(Post)]
    post_id: u64,
    tag_id: String,
}

fn main() {}

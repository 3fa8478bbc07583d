//! One option of an attribute, set at most once (the model is serde_derive's
//! `Attr<T>::set`): a second `wal`, `on_delete` or `collection` is a spanned error
//! naming both places, and the first value is kept.

use proc_macro2::Span;

use crate::ctx::Ctx;

pub struct Attr<T> {
    /// The option as the user writes it, for the error.
    name: &'static str,
    value: Option<(Span, T)>,
}

impl<T> Attr<T> {
    pub fn none(name: &'static str) -> Self {
        Attr { name, value: None }
    }

    /// Sets the option, or reports that it was given already.
    pub fn set(&mut self, ctx: &Ctx, span: Span, value: T) {
        match &self.value {
            Some((first, _)) => {
                let mut error = syn::Error::new(span, format!("`{}` is given twice; give each option once", self.name));
                error.combine(syn::Error::new(*first, format!("the first `{}` is here", self.name)));
                ctx.syn(error);
            }
            None => self.value = Some((span, value)),
        }
    }

    pub fn is_set(&self) -> bool {
        self.value.is_some()
    }

    pub fn span(&self) -> Option<Span> {
        self.value.as_ref().map(|(span, _)| *span)
    }

    pub fn get(self) -> Option<(Span, T)> {
        self.value
    }
}

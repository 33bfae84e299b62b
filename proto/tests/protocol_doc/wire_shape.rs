//! What a protocol type looks like on the wire, read from its serde derive
//! rather than written down a second time: the fields of a struct and the
//! type of each, the positions of a tuple struct, the variants of an enum
//! and what each carries. A field or variant added to proto shows up here
//! by itself, so PROTOCOL.md's tables can be compared with it.
//!
//! It works by deserializing the type from [`Sample`], a deserializer that
//! answers every request with the smallest value of the asked type (zero,
//! empty, the first variant) and writes the type down in the document's
//! notation as it goes: `u64`, `i64`, `str`, `bin`, `bool`, `T?` (T or
//! nil), `[T]` (array), `[A, B]` (fixed array), `{K: V}` (map), and the
//! name of any struct or enum.

use std::cell::RefCell;
use std::rc::Rc;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

/// A type's wire shape.
#[derive(Debug)]
pub enum Shape {
    /// A map: each field's name and type, in encoding order.
    Struct(Vec<(String, String)>),
    /// An array: each position's type.
    Tuple(Vec<String>),
    /// Each variant's name and content.
    Enum(Vec<(String, Content)>),
}

/// What an enum variant carries.
#[derive(Debug)]
pub enum Content {
    /// Nothing: the variant is written as its name.
    Unit,
    /// One value of this type.
    Newtype(String),
    /// Named fields.
    Struct(Vec<(String, String)>),
    /// Positions.
    Tuple(Vec<String>),
}

/// The wire shape of `T`.
pub fn describe<T: DeserializeOwned>() -> Shape {
    match probe::<T>(0) {
        Probed::Struct(fields) => Shape::Struct(fields),
        Probed::Tuple(items) => Shape::Tuple(items),
        Probed::Enum(variants, first) => {
            let mut all = vec![(variants[0].to_owned(), first)];
            for (i, name) in variants.iter().enumerate().skip(1) {
                match probe::<T>(i as u32) {
                    Probed::Enum(_, content) => all.push(((*name).to_owned(), content)),
                    other => panic!("{} changed shape: {other:?}", std::any::type_name::<T>()),
                }
            }
            Shape::Enum(all)
        }
    }
}

#[derive(Debug)]
enum Probed {
    Struct(Vec<(String, String)>),
    Tuple(Vec<String>),
    Enum(&'static [&'static str], Content),
}

/// Deserializes `T` once, choosing `variant` if it is an enum.
fn probe<T: DeserializeOwned>(variant: u32) -> Probed {
    let found = Rc::new(RefCell::new(None));
    let top = Top {
        variant,
        found: found.clone(),
    };
    if let Err(e) = T::deserialize(top) {
        panic!("cannot sample {}: {e}", std::any::type_name::<T>());
    }
    let probed = found.borrow_mut().take();
    probed.unwrap_or_else(|| panic!("{} is not a struct or enum", std::any::type_name::<T>()))
}

/// Why sampling failed (a type this sampler cannot make).
#[derive(Debug)]
struct Unsampled(String);

impl std::fmt::Display for Unsampled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsampled {}

impl de::Error for Unsampled {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Unsampled(msg.to_string())
    }
}

type Note = Rc<RefCell<String>>;

/// Samples values; writes the type into `note` when there is one.
#[derive(Default)]
struct Sample {
    note: Option<Note>,
}

impl Sample {
    /// A sampler that writes down its type.
    fn noted() -> (Sample, Note) {
        let note = Note::default();
        (
            Sample {
                note: Some(note.clone()),
            },
            note,
        )
    }

    /// A sampler for a part of this one's type: noted if this one is.
    fn part(&self) -> (Sample, Note) {
        match self.note {
            Some(_) => Sample::noted(),
            None => (Sample::default(), Note::default()),
        }
    }

    fn write(&self, text: &str) {
        if let Some(note) = &self.note {
            note.borrow_mut().push_str(text);
        }
    }
}

macro_rules! primitive {
    ($($method:ident => $visit:ident($($value:expr)?), $name:literal;)*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unsampled> {
            self.write($name);
            visitor.$visit($($value)?)
        })*
    };
}

impl<'de> de::Deserializer<'de> for Sample {
    type Error = Unsampled;

    primitive! {
        deserialize_bool => visit_bool(false), "bool";
        deserialize_i8 => visit_i8(0), "i8";
        deserialize_i16 => visit_i16(0), "i16";
        deserialize_i32 => visit_i32(0), "i32";
        deserialize_i64 => visit_i64(0), "i64";
        deserialize_u8 => visit_u8(0), "u8";
        deserialize_u16 => visit_u16(0), "u16";
        deserialize_u32 => visit_u32(0), "u32";
        deserialize_u64 => visit_u64(0), "u64";
        deserialize_f32 => visit_f32(0.0), "f32";
        deserialize_f64 => visit_f64(0.0), "f64";
        deserialize_char => visit_char('a'), "char";
        deserialize_str => visit_str(""), "str";
        deserialize_string => visit_str(""), "str";
        deserialize_bytes => visit_bytes(&[]), "bin";
        deserialize_byte_buf => visit_bytes(&[]), "bin";
        deserialize_unit => visit_unit(), "nil";
    }

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Unsampled> {
        Err(Unsampled(
            "a self-describing type has no fixed wire shape".into(),
        ))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unsampled> {
        let (inner, note) = self.part();
        let value = visitor.visit_some(inner)?;
        self.write(&format!("{}?", note.borrow()));
        Ok(value)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Unsampled> {
        self.write(name);
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Unsampled> {
        self.write(name);
        visitor.visit_newtype_struct(Sample::default())
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unsampled> {
        let (item, note) = self.part();
        let value = visitor.visit_seq(Items::new(vec![item]))?;
        self.write(&format!("[{}]", note.borrow()));
        Ok(value)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Unsampled> {
        let (items, notes): (Vec<_>, Vec<_>) = (0..len).map(|_| self.part()).unzip();
        let value = visitor.visit_seq(Items::new(items))?;
        self.write(&format!("[{}]", joined(&notes)));
        Ok(value)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Unsampled> {
        self.write(name);
        visitor.visit_seq(Items::new((0..len).map(|_| Sample::default()).collect()))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unsampled> {
        let (key, key_note) = self.part();
        let (value, value_note) = self.part();
        let map = visitor.visit_map(Entries(vec![(key, value)]))?;
        self.write(&format!(
            "{{{}: {}}}",
            key_note.borrow(),
            value_note.borrow()
        ));
        Ok(map)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Unsampled> {
        self.write(name);
        let samples = fields.iter().map(|_| Sample::default()).collect();
        visitor.visit_map(Fields::new(fields, samples))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Unsampled> {
        self.write(name);
        visitor.visit_enum(Pick {
            index: 0,
            content: None,
        })
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Unsampled> {
        Err(Unsampled("an identifier outside a struct or enum".into()))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unsampled> {
        visitor.visit_unit()
    }
}

fn joined(notes: &[Note]) -> String {
    let parts: Vec<String> = notes.iter().map(|n| n.borrow().clone()).collect();
    parts.join(", ")
}

fn named(fields: &[&str], notes: &[Note]) -> Vec<(String, String)> {
    let types = notes.iter().map(|n| n.borrow().clone());
    fields.iter().map(|f| (*f).to_owned()).zip(types).collect()
}

/// The top of a type: a struct's fields, a tuple struct's positions or
/// one variant's content, each written down.
struct Top {
    variant: u32,
    found: Rc<RefCell<Option<Probed>>>,
}

impl<'de> de::Deserializer<'de> for Top {
    type Error = Unsampled;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Unsampled> {
        Err(Unsampled("not a struct, tuple struct or enum".into()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Unsampled> {
        let (samples, notes): (Vec<_>, Vec<_>) = fields.iter().map(|_| Sample::noted()).unzip();
        let value = visitor.visit_map(Fields::new(fields, samples))?;
        *self.found.borrow_mut() = Some(Probed::Struct(named(fields, &notes)));
        Ok(value)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Unsampled> {
        let (samples, notes): (Vec<_>, Vec<_>) = (0..len).map(|_| Sample::noted()).unzip();
        let value = visitor.visit_seq(Items::new(samples))?;
        let types = notes.iter().map(|n| n.borrow().clone()).collect();
        *self.found.borrow_mut() = Some(Probed::Tuple(types));
        Ok(value)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Unsampled> {
        let content = Rc::new(RefCell::new(None));
        let value = visitor.visit_enum(Pick {
            index: self.variant,
            content: Some(content.clone()),
        })?;
        let content = content
            .borrow_mut()
            .take()
            .expect("the variant was visited");
        *self.found.borrow_mut() = Some(Probed::Enum(variants, content));
        Ok(value)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple map
        identifier ignored_any
    }
}

/// Array items, one sampler each.
struct Items(std::vec::IntoIter<Sample>);

impl Items {
    fn new(samples: Vec<Sample>) -> Items {
        Items(samples.into_iter())
    }
}

impl<'de> SeqAccess<'de> for Items {
    type Error = Unsampled;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Unsampled> {
        match self.0.next() {
            Some(sample) => seed.deserialize(sample).map(Some),
            None => Ok(None),
        }
    }
}

/// Map entries of a `{K: V}` map.
struct Entries(Vec<(Sample, Sample)>);

impl<'de> MapAccess<'de> for Entries {
    type Error = Unsampled;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Unsampled> {
        match self.0.first_mut() {
            Some((key, _)) => seed.deserialize(std::mem::take(key)).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Unsampled> {
        let (_, value) = self.0.remove(0);
        seed.deserialize(value)
    }
}

/// A struct's fields by name, each with its sampler.
struct Fields {
    names: std::slice::Iter<'static, &'static str>,
    samples: std::vec::IntoIter<Sample>,
}

impl Fields {
    fn new(names: &'static [&'static str], samples: Vec<Sample>) -> Fields {
        Fields {
            names: names.iter(),
            samples: samples.into_iter(),
        }
    }
}

impl<'de> MapAccess<'de> for Fields {
    type Error = Unsampled;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Unsampled> {
        match self.names.next() {
            Some(name) => seed.deserialize((*name).into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Unsampled> {
        seed.deserialize(self.samples.next().expect("a value per field"))
    }
}

/// Chooses variant `index` of an enum; writes down its content if asked.
struct Pick {
    index: u32,
    content: Option<Rc<RefCell<Option<Content>>>>,
}

impl Pick {
    fn found(&self, content: Content) {
        if let Some(slot) = &self.content {
            *slot.borrow_mut() = Some(content);
        }
    }

    fn sample(&self) -> (Sample, Note) {
        match self.content {
            Some(_) => Sample::noted(),
            None => (Sample::default(), Note::default()),
        }
    }
}

impl<'de> EnumAccess<'de> for Pick {
    type Error = Unsampled;
    type Variant = Pick;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Pick), Unsampled> {
        let variant = seed.deserialize(self.index.into_deserializer())?;
        Ok((variant, self))
    }
}

impl<'de> VariantAccess<'de> for Pick {
    type Error = Unsampled;

    fn unit_variant(self) -> Result<(), Unsampled> {
        self.found(Content::Unit);
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Unsampled> {
        let (sample, note) = self.sample();
        let value = seed.deserialize(sample)?;
        self.found(Content::Newtype(note.borrow().clone()));
        Ok(value)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Unsampled> {
        let (samples, notes): (Vec<_>, Vec<_>) = (0..len).map(|_| self.sample()).unzip();
        let value = visitor.visit_seq(Items::new(samples))?;
        self.found(Content::Tuple(
            notes.iter().map(|n| n.borrow().clone()).collect(),
        ));
        Ok(value)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Unsampled> {
        let (samples, notes): (Vec<_>, Vec<_>) = fields.iter().map(|_| self.sample()).unzip();
        let value = visitor.visit_map(Fields::new(fields, samples))?;
        self.found(Content::Struct(named(fields, &notes)));
        Ok(value)
    }
}

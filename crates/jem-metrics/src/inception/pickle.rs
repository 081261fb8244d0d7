//! A small, panic-free reader of Python pickles, as far as PyTorch checkpoints need them.
//!
//! It evaluates the opcodes of protocols 0-5 that `torch.save` emits (no text-mode
//! protocol-0 opcodes) into a tree of [`Value`]s. Classes are not resolved: a call such as
//! `torch._utils._rebuild_tensor_v2(...)` stays a [`Value::Call`] for the caller to
//! interpret. Every read is bounds-checked and every error is a message naming the byte
//! offset, so corrupt or truncated input gives an error, never a panic or a huge allocation.

use std::collections::HashMap;

/// A pickled value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits, as its little-endian two's complement bytes.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// A dict (or `OrderedDict`), entries in insertion order.
    Dict(Vec<(Value, Value)>),
    /// A global name (`module.name`), such as a class or a function.
    Global {
        module: String,
        name: String,
    },
    /// `callable(*args)` (opcodes REDUCE and NEWOBJ).
    Call {
        callable: Box<Value>,
        args: Box<Value>,
    },
    /// An object given a state (opcode BUILD); a dict given a state stays a dict.
    Build {
        object: Box<Value>,
        state: Box<Value>,
    },
    /// A persistent id (opcode BINPERSID): PyTorch's reference to a storage.
    PersistentId(Box<Value>),
    /// The marker of opcode MARK (never left in a finished value).
    Mark,
}

/// The deepest nesting of containers a pickle may build. `torch.save` files nest a handful of
/// levels; a limit keeps every recursive walk (including `Drop`) within the stack.
pub(crate) const MAX_DEPTH: usize = 100;

/// Parses consecutive pickles from one byte buffer.
pub(crate) struct Parser<'a> {
    data: &'a [u8],
    pos: usize,
    /// What copies made by DUP and memo GET may still cost (see [`weight`]): without a limit,
    /// a few hundred bytes that GET a list twice into a new list, memoize it and repeat,
    /// double their size with every step.
    copy_budget: usize,
}

type PResult<T> = std::result::Result<T, String>;

impl<'a> Parser<'a> {
    /// A parser at the start of `data`.
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            copy_budget: data.len().saturating_mul(64).saturating_add(16 << 20),
        }
    }

    /// The offset of the next unread byte.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    fn take(&mut self, n: usize) -> PResult<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(format!(
                "unexpected end of data at byte {} (needed {n} more bytes)",
                self.pos
            )),
        }
    }

    fn byte(&mut self) -> PResult<u8> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> PResult<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn length(&mut self, width: usize) -> PResult<usize> {
        let n = match width {
            1 => u64::from(self.byte()?),
            4 => u64::from(u32::from_le_bytes(self.le()?)),
            _ => u64::from_le_bytes(self.le()?),
        };
        usize::try_from(n).map_err(|_| format!("length {n} too large at byte {}", self.pos))
    }

    fn line(&mut self) -> PResult<String> {
        let rest = &self.data[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(n) => {
                let s = String::from_utf8_lossy(&rest[..n]).into_owned();
                self.pos += n + 1;
                Ok(s)
            }
            None => Err(format!("unterminated line at byte {}", self.pos)),
        }
    }

    /// Evaluates one pickle, up to and including its STOP opcode.
    pub(crate) fn load(&mut self) -> PResult<Value> {
        let mut stack: Vec<Value> = Vec::new();
        let mut memo: HashMap<u64, Value> = HashMap::new();
        loop {
            let at = self.pos;
            let op = self.byte()?;
            let err = |what: &str| format!("{what} (opcode 0x{op:02x} at byte {at})");
            let pop = |stack: &mut Vec<Value>| stack.pop().ok_or_else(|| err("empty stack"));
            // every value that goes into a container passes here, so no value grows deeper
            // than MAX_DEPTH
            let nest_one = |v: &Value| -> PResult<()> {
                match deeper_than(v, MAX_DEPTH - 1) {
                    true => Err(err(&format!("containers nested deeper than {MAX_DEPTH}"))),
                    false => Ok(()),
                }
            };
            let nest = |items: &[Value]| items.iter().try_for_each(nest_one);
            let pop_mark = |stack: &mut Vec<Value>| -> PResult<Vec<Value>> {
                let i = stack
                    .iter()
                    .rposition(|v| *v == Value::Mark)
                    .ok_or_else(|| err("no MARK on the stack"))?;
                let items = stack.split_off(i + 1);
                stack.pop();
                nest(&items)?;
                Ok(items)
            };
            let copy = |budget: &mut usize, v: &Value| -> PResult<Value> {
                *budget = budget.checked_sub(weight(v)).ok_or_else(|| {
                    err("copies of memoized values exceed what the file can justify")
                })?;
                Ok(v.clone())
            };
            match op {
                0x80 => {
                    let proto = self.byte()?;
                    if proto > 5 {
                        return Err(err(&format!("unsupported pickle protocol {proto}")));
                    }
                }
                0x95 => {
                    self.take(8)?; // FRAME: a length hint only
                }
                b'.' => {
                    let top = pop(&mut stack)?;
                    if top == Value::Mark {
                        return Err(err("pickle ends on a MARK"));
                    }
                    return Ok(top);
                }
                b'(' => stack.push(Value::Mark),
                b'0' => {
                    pop(&mut stack)?;
                }
                b'1' => {
                    pop_mark(&mut stack)?;
                }
                b'2' => {
                    let top = copy(
                        &mut self.copy_budget,
                        stack.last().ok_or_else(|| err("empty stack"))?,
                    )?;
                    stack.push(top);
                }
                b'N' => stack.push(Value::None),
                0x88 => stack.push(Value::Bool(true)),
                0x89 => stack.push(Value::Bool(false)),
                b'J' => stack.push(Value::Int(i64::from(i32::from_le_bytes(self.le()?)))),
                b'K' => stack.push(Value::Int(i64::from(self.byte()?))),
                b'M' => stack.push(Value::Int(i64::from(u16::from_le_bytes(self.le()?)))),
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.length(1)?
                    } else {
                        let n = i32::from_le_bytes(self.le()?);
                        usize::try_from(n).map_err(|_| err("negative LONG4 length"))?
                    };
                    stack.push(long(self.take(n)?));
                }
                b'G' => stack.push(Value::Float(f64::from_be_bytes(self.le()?))),
                b'X' | 0x8c | 0x8d => {
                    let width = match op {
                        0x8c => 1,
                        b'X' => 4,
                        _ => 8,
                    };
                    let n = self.length(width)?;
                    let bytes = self.take(n)?;
                    let s = std::str::from_utf8(bytes).map_err(|_| err("invalid UTF-8 string"))?;
                    stack.push(Value::Str(s.to_string()));
                }
                b'T' | b'U' => {
                    let n = self.length(if op == b'U' { 1 } else { 4 })?;
                    let s = String::from_utf8_lossy(self.take(n)?).into_owned();
                    stack.push(Value::Str(s));
                }
                b'B' | b'C' | 0x8e => {
                    let width = match op {
                        b'C' => 1,
                        b'B' => 4,
                        _ => 8,
                    };
                    let n = self.length(width)?;
                    stack.push(Value::Bytes(self.take(n)?.to_vec()));
                }
                b')' => stack.push(Value::Tuple(Vec::new())),
                b't' => {
                    let items = pop_mark(&mut stack)?;
                    stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if stack.len() < n {
                        return Err(err("stack too short for TUPLEn"));
                    }
                    let items = stack.split_off(stack.len() - n);
                    if items.contains(&Value::Mark) {
                        return Err(err("MARK inside TUPLEn"));
                    }
                    nest(&items)?;
                    stack.push(Value::Tuple(items));
                }
                b']' => stack.push(Value::List(Vec::new())),
                b'l' => {
                    let items = pop_mark(&mut stack)?;
                    stack.push(Value::List(items));
                }
                b'a' | b'e' => {
                    let items = if op == b'a' {
                        let v = pop(&mut stack)?;
                        nest(std::slice::from_ref(&v))?;
                        vec![v]
                    } else {
                        pop_mark(&mut stack)?
                    };
                    match stack.last_mut() {
                        Some(Value::List(list)) => list.extend(items),
                        _ => return Err(err("APPEND to a non-list")),
                    }
                }
                b'}' => stack.push(Value::Dict(Vec::new())),
                b'd' | b's' | b'u' => {
                    let items = if op == b's' {
                        let v = pop(&mut stack)?;
                        let k = pop(&mut stack)?;
                        let pair = vec![k, v];
                        nest(&pair)?;
                        pair
                    } else {
                        pop_mark(&mut stack)?
                    };
                    if items.len() % 2 != 0 {
                        return Err(err("odd number of dict items"));
                    }
                    let mut pairs = Vec::with_capacity(items.len() / 2);
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    if op == b'd' {
                        stack.push(Value::Dict(pairs));
                    } else {
                        match stack.last_mut() {
                            Some(Value::Dict(dict)) => dict.extend(pairs),
                            _ => return Err(err("SETITEM on a non-dict")),
                        }
                    }
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    stack.push(Value::Global { module, name });
                }
                0x93 => {
                    let name = pop(&mut stack)?;
                    let module = pop(&mut stack)?;
                    match (module, name) {
                        (Value::Str(module), Value::Str(name)) => {
                            stack.push(Value::Global { module, name })
                        }
                        _ => return Err(err("STACK_GLOBAL needs two strings")),
                    }
                }
                b'R' | 0x81 => {
                    let args = pop(&mut stack)?;
                    let callable = pop(&mut stack)?;
                    nest_one(&callable)?;
                    nest_one(&args)?;
                    stack.push(call(callable, args));
                }
                b'b' => {
                    let state = pop(&mut stack)?;
                    let object = pop(&mut stack)?;
                    nest_one(&state)?;
                    nest_one(&object)?;
                    stack.push(match object {
                        dict @ Value::Dict(_) => dict, // attributes such as `_metadata`
                        object => Value::Build {
                            object: Box::new(object),
                            state: Box::new(state),
                        },
                    });
                }
                b'Q' => {
                    let id = pop(&mut stack)?;
                    nest_one(&id)?;
                    stack.push(Value::PersistentId(Box::new(id)));
                }
                b'q' | b'r' | 0x94 => {
                    let key = match op {
                        b'q' => u64::from(self.byte()?),
                        b'r' => u64::from(u32::from_le_bytes(self.le()?)),
                        _ => memo.len() as u64,
                    };
                    let top = copy(
                        &mut self.copy_budget,
                        stack.last().ok_or_else(|| err("empty stack"))?,
                    )?;
                    memo.insert(key, top);
                }
                b'h' | b'j' => {
                    let key = if op == b'h' {
                        u64::from(self.byte()?)
                    } else {
                        u64::from(u32::from_le_bytes(self.le()?))
                    };
                    let v = memo
                        .get(&key)
                        .ok_or_else(|| err(&format!("memo key {key} not set")))?;
                    let v = copy(&mut self.copy_budget, v)?;
                    stack.push(v);
                }
                _ => return Err(err("unsupported pickle opcode")),
            }
        }
    }
}

/// The children of a container value.
fn children(v: &Value) -> Vec<&Value> {
    match v {
        Value::Tuple(items) | Value::List(items) => items.iter().collect(),
        Value::Dict(pairs) => pairs.iter().flat_map(|(k, v)| [k, v]).collect(),
        Value::Call { callable, args } => vec![callable, args],
        Value::Build { object, state } => vec![object, state],
        Value::PersistentId(id) => vec![id],
        _ => Vec::new(),
    }
}

/// True when `v` nests containers more than `levels` deep (a leaf is 0 deep). Recurses at
/// most `levels` frames.
fn deeper_than(v: &Value, levels: usize) -> bool {
    let kids = children(v);
    match levels {
        _ if kids.is_empty() => false,
        0 => true,
        _ => kids.into_iter().any(|c| deeper_than(c, levels - 1)),
    }
}

/// What a copy of `v` costs: 16 a value plus its text and bytes (values on the stack are
/// at most [`MAX_DEPTH`] deep, so the recursion is bounded).
fn weight(v: &Value) -> usize {
    let own = match v {
        Value::Str(s) => s.len(),
        Value::Bytes(b) | Value::BigInt(b) => b.len(),
        Value::Global { module, name } => module.len() + name.len(),
        _ => 0,
    };
    children(v)
        .into_iter()
        .fold(16 + own, |w, c| w.saturating_add(weight(c)))
}

/// A little-endian two's complement integer of `bytes.len()` bytes.
fn long(bytes: &[u8]) -> Value {
    if bytes.len() > 8 {
        return Value::BigInt(bytes.to_vec());
    }
    let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
    let mut buf = [if negative { 0xff } else { 0 }; 8];
    buf[..bytes.len()].copy_from_slice(bytes);
    Value::Int(i64::from_le_bytes(buf))
}

/// `callable(*args)`; `collections.OrderedDict()` becomes an empty dict.
fn call(callable: Value, args: Value) -> Value {
    if let Value::Global { module, name } = &callable
        && module == "collections"
        && name == "OrderedDict"
        && args == Value::Tuple(Vec::new())
    {
        return Value::Dict(Vec::new());
    }
    Value::Call {
        callable: Box::new(callable),
        args: Box::new(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs_sign_extend() {
        assert_eq!(long(&[0xff]), Value::Int(-1));
        assert_eq!(long(&[0x01, 0x01]), Value::Int(257));
        assert_eq!(long(&[]), Value::Int(0));
        assert!(matches!(long(&[0; 10]), Value::BigInt(_)));
    }

    #[test]
    fn truncated_input_is_an_error() {
        // protocol 2, EMPTY_DICT, MARK, BINUNICODE of length 5 with only 2 bytes present
        let data = b"\x80\x02}(X\x05\x00\x00\x00ab";
        for n in 0..data.len() {
            assert!(Parser::new(&data[..n]).load().is_err());
        }
    }

    #[test]
    fn dict_with_items() {
        let data = b"\x80\x02}q\x00(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00bh\x00u.";
        let v = Parser::new(data).load().unwrap();
        let Value::Dict(items) = v else {
            panic!("{v:?}")
        };
        assert_eq!(items[0], (Value::Str("a".into()), Value::Int(1)));
        assert_eq!(items[1], (Value::Str("b".into()), Value::Dict(vec![])));
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        // 2 million nested lists: `]` pushes a list, `a` appends it to the one below
        let n = 2_000_000;
        let mut data = b"\x80\x02".to_vec();
        data.extend(std::iter::repeat_n(b']', n));
        data.extend(std::iter::repeat_n(b'a', n - 1));
        data.push(b'.');
        let err = Parser::new(&data).load().unwrap_err();
        assert!(err.contains("nested deeper than 100"), "{err}");
        // the same through MARK ... LIST and TUPLE
        let mut data = b"\x80\x02".to_vec();
        data.extend(std::iter::repeat_n(b'(', n));
        data.extend(std::iter::repeat_n(b't', n));
        data.push(b'.');
        assert!(Parser::new(&data).load().is_err());
        // shallow nesting still reads
        let ok = b"\x80\x02]]]aa.";
        assert!(Parser::new(ok).load().is_ok());
    }

    #[test]
    fn memo_copy_bombs_are_refused() {
        // a list of 1000 strings, memoized; then 60 times: GET it twice into a new list and
        // memoize that (2^60 copies without a budget)
        let mut data = b"\x80\x02(".to_vec();
        for _ in 0..1000 {
            data.extend(b"X\x04\x00\x00\x00abcd");
        }
        data.extend(b"lq\x00");
        for k in 0..60u8 {
            data.extend([b'(', b'h', k, b'h', k, b'l', b'q', k + 1]);
        }
        data.push(b'.');
        let err = Parser::new(&data).load().unwrap_err();
        assert!(err.contains("copies of memoized values"), "{err}");
    }
}

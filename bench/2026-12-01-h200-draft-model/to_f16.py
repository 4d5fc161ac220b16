"""Rewrite a GGUF with every quantized tensor dequantized to F16 (metadata kept)."""
import sys
import numpy as np
import gguf
src, out = sys.argv[1], sys.argv[2]
r = gguf.GGUFReader(src)
arch = r.fields["general.architecture"].contents()
w = gguf.GGUFWriter(out, arch)
skip = {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count", "general.architecture", "general.file_type"}
for name, f in r.fields.items():
    if name in skip:
        continue
    t = f.types[0]
    if t == gguf.GGUFValueType.ARRAY:
        w.add_array(name, f.contents())
    else:
        w.add_key_value(name, f.contents(), t)
w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
for t in r.tensors:
    if t.tensor_type in (gguf.GGMLQuantizationType.F32,):
        w.add_tensor(t.name, np.array(t.data), raw_dtype=t.tensor_type)
        continue
    d = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float16)
    w.add_tensor(t.name, d.reshape([int(x) for x in reversed(t.shape)]))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
print("wrote", out)

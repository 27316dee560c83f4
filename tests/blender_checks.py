"""Run by Blender's Python (the `bpy` module), not by pytest: tests/test_blender.py starts it with one JSON
argument and reads the JSON it writes. It installs the add-on zip, runs its Generate operator against the
test's server, imports a run's mesh.glb / mesh.obj / mesh.ply with Blender's importers at their defaults,
describes what Blender made of each, and renders one small still of the add-on's import."""
import json
import sys
import time

import bpy


def describe(objects) -> dict:
    """World-space bounding box, the topmost vertex, faces, and where the colour comes from."""
    meshes = [o for o in objects if o.type == "MESH"]
    points = [o.matrix_world @ v.co for o in meshes for v in o.data.vertices]
    lo = [min(p[i] for p in points) for i in range(3)]
    hi = [max(p[i] for p in points) for i in range(3)]
    top = max(points, key=lambda p: p[2])
    textures, colour_attributes = [], []
    for o in meshes:
        colour_attributes += [(a.name, len({tuple(round(c, 3) for c in d.color) for d in a.data}))
                              for a in o.data.color_attributes]
        for slot in o.material_slots:
            if slot.material is None or not slot.material.use_nodes:
                continue
            for node in slot.material.node_tree.nodes:
                if node.type == "BSDF_PRINCIPLED" and node.inputs["Base Color"].links:
                    source = node.inputs["Base Color"].links[0].from_node
                    if source.type == "TEX_IMAGE" and source.image is not None:
                        textures.append({"image": source.image.name, "size": list(source.image.size)})
    return {"objects": len(meshes), "faces": sum(len(o.data.polygons) for o in meshes),
            "bbox": [lo, hi], "top": list(top), "textures": textures, "colour_attributes": colour_attributes,
            "names": [o.name for o in meshes], "locations": [list(o.location) for o in meshes]}


def clear() -> None:
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)


def render(path: str, objects) -> None:
    """A small Cycles still (CPU) of the imported asset, lit by a sun, seen from the front and above."""
    import mathutils

    scene = bpy.context.scene
    info = describe(objects)
    lo, hi = mathutils.Vector(info["bbox"][0]), mathutils.Vector(info["bbox"][1])
    centre, size = (lo + hi) / 2, max(hi - lo)
    camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    scene.collection.objects.link(camera)
    camera.location = centre + mathutils.Vector((0.0, -2.2 * size, 1.1 * size))
    camera.rotation_euler = (centre - camera.location).to_track_quat("-Z", "Y").to_euler()
    scene.camera = camera
    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    sun.rotation_euler = (0.7, 0.2, 0.5)
    sun.data.energy = 3.0
    scene.collection.objects.link(sun)
    world = scene.world or bpy.data.worlds.new("world")
    scene.world = world
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.8, 0.8, 0.8, 1.0)
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 16
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 480, 360, 100
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)


def blend_images(props, photo: str) -> list:
    """What the add-on sends for an image of the .blend: one loaded from disk, the same packed, one painted."""
    import base64
    import importlib

    addon = importlib.import_module("bl_ext.user_default.img2mesh")
    props.source = "BLEND"
    sent = []
    props.image = bpy.data.images.load(photo)
    sent.append(addon.image_bytes(props))
    props.image.pack()
    sent.append(addon.image_bytes(props))
    props.image = bpy.data.images.new("painted", 96, 64)
    props.image.generated_color = (0.9, 0.2, 0.1, 1.0)
    sent.append(addon.image_bytes(props))
    props.source, props.image = "FILE", None
    return [[name, base64.b64encode(data).decode()] for name, data in sent]


def main(args: dict) -> dict:
    out = {}
    bpy.ops.wm.read_factory_settings(use_empty=True)
    start = time.perf_counter()
    installed = bpy.ops.extensions.package_install_files(filepath=args["addon"], repo="user_default",
                                                         enable_on_install=True)
    out["install"] = list(installed)
    scene = bpy.context.scene
    scene.cursor.location = args["cursor"]
    props = scene.img2mesh
    out["blend_images"] = blend_images(props, args["photo"])
    props.source, props.filepath, props.server = "FILE", args["photo"], args["server"]
    props.elevation, props.preset, props.token = 5.0, "cpu", args.get("token", "")
    result = bpy.ops.img2mesh.generate()  # the operator as scripts run it (the panel's button runs it modal)
    out["addon"] = {"result": list(result), "status": props.status, "error": props.error, "job": props.job_id,
                    "seconds": time.perf_counter() - start, **describe(scene.objects)}
    if args.get("render"):
        render(args["render"], scene.objects)
    for fmt, path in args["files"].items():  # Blender's own importers at their defaults
        clear()
        {"glb": lambda: bpy.ops.import_scene.gltf(filepath=path), "obj": lambda: bpy.ops.wm.obj_import(filepath=path),
         "ply": lambda: bpy.ops.wm.ply_import(filepath=path)}[fmt]()
        out[fmt] = describe(bpy.context.scene.objects)
    return out


if __name__ == "__main__":
    arguments = json.loads(sys.argv[-1])
    with open(arguments["result"], "w") as f:
        json.dump(main(arguments), f)

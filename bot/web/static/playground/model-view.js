// The finished model on the playground's canvas (three.js, served by Lumi). Loaded on demand, so the
// page works where the viewer's scripts are not installed.
import * as THREE from "three";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";

// Resolves once the model is drawn; rejects when it cannot be loaded.
export function showModel(canvas, glbUrl) {
  // preserveDrawingBuffer keeps the last frame readable, which screenshots rely on.
  const renderer = new THREE.WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
  renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
  renderer.outputColorSpace = THREE.SRGBColorSpace;
  renderer.setSize(canvas.clientWidth || 640, canvas.clientHeight || 400, false);
  const scene = new THREE.Scene();
  scene.background = new THREE.Color(0x1f2229);
  scene.add(new THREE.HemisphereLight(0xffffff, 0x3a3f4b, 2.6));
  scene.add(new THREE.AmbientLight(0xffffff, 0.6));
  const light = new THREE.DirectionalLight(0xffffff, 2.0);
  light.position.set(3, 5, 4);
  scene.add(light);
  const camera = new THREE.PerspectiveCamera(40, (canvas.clientWidth || 640) / (canvas.clientHeight || 400), 0.01, 1000);
  const controls = new OrbitControls(camera, canvas);
  controls.enableDamping = true;
  controls.autoRotate = true;
  const draw = () => {
    controls.update();
    renderer.render(scene, camera);
    requestAnimationFrame(draw);
  };
  return new Promise((resolve, reject) => {
    new GLTFLoader().load(glbUrl, (gltf) => {
      const box = new THREE.Box3().setFromObject(gltf.scene);
      const size = box.getSize(new THREE.Vector3());
      gltf.scene.position.sub(box.getCenter(new THREE.Vector3()));
      const radius = Math.max(size.x, size.y, size.z) || 1;
      const distance = (radius / (2 * Math.tan((camera.fov * Math.PI) / 360))) * 1.6;
      camera.near = distance / 100;
      camera.far = distance * 100;
      camera.position.set(distance * 0.75, distance * 0.55, distance * 0.9);
      camera.updateProjectionMatrix();
      scene.add(gltf.scene);
      requestAnimationFrame(draw);
      resolve();
    }, undefined, reject);
  });
}
